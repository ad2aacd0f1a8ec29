"""One environment per run of a vector, stepped in parallel worker processes (gymnasium's vector envs).

Episodes never reset on their own (autoreset disabled): the train loop resets each run's env with that
run's episode seed when its episode ends, so run i of a vector sees exactly the episodes it would alone.

Envs that render (visual observations, evaluation videos) always live in workers, even a single one, so the
trainer never loads an OpenGL library (envs/headless.py): a first worker checks that a renderer starts, and
the trainer raises its one-line `RendererMissing` before any env is made.
"""

from __future__ import annotations

import concurrent.futures
import functools
import multiprocessing
import os
import signal
from collections.abc import Sequence

import gymnasium
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from envs import headless, suite
from envs.frames import with_frame_stack
from envs.make import make_env, make_offline_env


class ReplayOnReset(gymnasium.Wrapper):
    """`reset(seed=s)` followed by the actions set in `pending_actions`, consumed by that reset.

    A checkpoint taken mid-episode stores the episode's reset seed and actions; replaying them on the
    deterministic env restores its exact state, so a run resumes from any step, not only episode ends.
    """

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        self.pending_actions: list = []

    def reset(self, *, seed=None, options=None):
        observation, info = self.env.reset(seed=seed, options=options)
        actions, self.pending_actions = self.pending_actions, []
        for action in actions:
            observation, _, terminated, truncated, info = self.env.step(np.asarray(action, np.float32))
            if terminated or truncated:
                raise RuntimeError("a replayed episode ended before its recorded actions did")
        return observation, info


def _frame_stack(env_cfg: dict) -> int:
    return int(env_cfg.get("frame_stack") or 1)


def _make_replayable(env_cfg: dict) -> gymnasium.Env:
    """The env of `env_cfg`, its frames stacked (`frame_stack`, visual envs) beneath the replay of actions."""
    return ReplayOnReset(with_frame_stack(make_env(env_cfg), _frame_stack(env_cfg)))


def _make_in_worker(env_cfg: dict, trainer: int, renders: bool) -> gymnasium.Env:
    """In a worker process: the trainer alone answers the cluster's stop signals (it checkpoints, then
    closes its envs: preemption/__init__.py); a worker they killed would take the env down
    first. AsyncVectorEnv also calls this in the trainer (pid `trainer`), for the spaces of a first env:
    there the signals keep their handlers and the env is one that renders nothing (`make_offline_env`)."""
    if os.getpid() == trainer:
        return with_frame_stack(make_offline_env(env_cfg), _frame_stack(env_cfg))
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_IGN)
    if renders:
        headless.load_renderer()
    return _make_replayable(env_cfg)


def make_vector_env(env_cfgs: Sequence[dict], videos: bool = False) -> gymnasium.vector.VectorEnv:
    """A vector of one env per config (plain dicts of configs/env keys), in worker processes when more than
    one or when they render (visual envs, or `videos`: evaluation videos); a single state env needs no
    process of its own."""
    renders = _renders(env_cfgs, videos)
    if len(env_cfgs) == 1 and not renders:
        return SyncVectorEnv(
            [functools.partial(_make_replayable, dict(env_cfgs[0]))], autoreset_mode=AutoresetMode.DISABLED
        )
    check_renderer(env_cfgs, videos)
    return AsyncVectorEnv(
        [functools.partial(_make_in_worker, dict(env_cfg), os.getpid(), renders) for env_cfg in env_cfgs],
        autoreset_mode=AutoresetMode.DISABLED,
        context=_start_method(),
    )


def _renders(env_cfgs: Sequence[dict], videos: bool) -> bool:
    return videos or any(suite.is_visual(str(env_cfg["name"])) for env_cfg in env_cfgs)


def check_renderer(env_cfgs: Sequence[dict], videos: bool = False) -> None:
    """Raises `RendererMissing` (one line naming the fix) when these envs render and a worker process cannot
    start a renderer. A run asks before it loads its data, not hours later at its first evaluation."""
    if _renders(env_cfgs, videos) and (error := _worker_renderer_error(_start_method())):
        raise headless.RendererMissing(error)


@functools.cache
def _worker_renderer_error(context: str) -> str | None:
    """The one line of a renderer that cannot start in a worker of `context` (envs/headless.py
    `renderer_error`), or None; asked once per trainer, before the envs: a worker that failed while making
    its env would end in a page of traceback."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(context)) as pool:
        return pool.submit(headless.renderer_error).result()


def _start_method() -> str:
    """forkserver: a clean process to fork workers from (forking the trainer would copy JAX's threads).

    The server imports this module, MuJoCo and OGBench once, so each worker starts as a fork of it instead of
    importing them anew: 4 pointmaze workers of a trainer start in 1.6-1.8 s instead of 8.8-9.4 s on a 2-core
    CPU (the first vector of a process, which starts the server, in 5.4 s).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    multiprocessing.get_context("forkserver").set_forkserver_preload([__name__])  # before the server starts
    return "forkserver"


def reset_runs(
    vector_env: gymnasium.vector.VectorEnv,
    observations: np.ndarray,
    runs: Sequence[int],
    seeds: Sequence[int],
    replay_actions: Sequence[list] | None = None,
) -> np.ndarray:
    """Reset the envs of `runs` with `seeds` (then replay `replay_actions[k]` on run k's env, when given);
    returns `observations` with those runs' rows replaced."""
    if not len(runs):
        return observations
    num = vector_env.num_envs
    mask = np.zeros(num, bool)
    mask[list(runs)] = True
    all_seeds: list = [None] * num
    for run, seed in zip(runs, seeds, strict=True):
        all_seeds[run] = int(seed)
    if replay_actions is not None:
        pending: list = [[] for _ in range(num)]
        for run, actions in zip(runs, replay_actions, strict=True):
            pending[run] = actions
        vector_env.set_attr("pending_actions", pending)
    reset_observations, _ = vector_env.reset(seed=all_seeds, options={"reset_mask": mask})
    observations = np.array(observations, copy=True)
    observations[mask] = reset_observations[mask]
    return observations
