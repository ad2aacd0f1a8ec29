"""OGBench single-task names: what they mean, and the environments they make.

A single-task name reads `<domain>-<dataset type>-singletask[-task<N>]-<version>`, e.g.
`cube-double-play-singletask-task2-v0`. OGBench registers the environment without the dataset type
(`cube-double-singletask-task2-v0`) and publishes the data without the task (`cube-double-play-v0.npz`).
The helpers here apply the rules of `ogbench.make_env_and_datasets`, so the file they name is the one
OGBench itself would load. This module knows OGBench alone: envs/make.py sends goal-conditioned (oraclerep)
and robomimic names elsewhere.
"""

import dataclasses
import functools

import gymnasium
import numpy as np
import ogbench  # noqa: F401  (importing it registers the environments)

from envs import headless
from envs.config import EnvConfig

DATASET_TYPES = ("navigate", "stitch", "explore", "play", "noisy")
ORACLEREP = "oraclerep"
VISUAL = "visual-"


def is_goal_conditioned(name: str) -> bool:
    """Whether `name` is an oraclerep (goal-conditioned) task name (envs/goal_conditioned.py)."""
    return ORACLEREP in name.split("-")


def _registered_single_task_envs() -> list[str]:
    return sorted(env_id for env_id in gymnasium.registry if "-singletask" in env_id)


def _unknown_env(name: str) -> ValueError:
    return ValueError(
        f"unknown env '{name}': expected '<domain>-<dataset type>-singletask[-task<N>]-v0' (e.g. "
        "'cube-double-play-singletask-task2-v0') where '<domain>-singletask[-task<N>]-v0' is one of "
        f"OGBench's single-task environments: {', '.join(_registered_single_task_envs())}"
    )


def _single_task_splits(name: str) -> tuple[list[str], int]:
    """The name's dash-separated words and the position of 'singletask' (a dataset type must precede it)."""
    splits = name.split("-")
    if "singletask" not in splits or splits.index("singletask") < 2:
        raise _unknown_env(name)
    return splits, splits.index("singletask")


def env_id_of(name: str) -> str:
    """The gymnasium id: 'cube-double-play-singletask-task2-v0' -> 'cube-double-singletask-task2-v0'."""
    splits, pos = _single_task_splits(name)
    return "-".join(splits[: pos - 1] + splits[pos:])


def dataset_name_of(name: str) -> str:
    """OGBench's dataset name: 'cube-double-play-singletask-task2-v0' -> 'cube-double-play-v0'; the
    goal-conditioned 'cube-double-play-oraclerep-v0' (envs/goal_conditioned.py) reads the same file."""
    splits = name.split("-")
    if ORACLEREP in splits:
        return "-".join(word for word in splits if word != ORACLEREP)
    splits, pos = _single_task_splits(name)
    return "-".join(splits[:pos] + splits[-1:])


def dataset_file_name(name: str) -> str:
    """The published file: 'cube-double-play-singletask-task2-v0' -> 'cube-double-play-v0.npz'."""
    return f"{dataset_name_of(name)}.npz"


def domain_of(name: str) -> str:
    """The words before the dataset type ('cube-double', 'pointmaze-medium'); keys per-domain hyperparameters.

    Works for single-task names, dataset names ('cube-double-play-v0') and variants with extra words after the
    dataset type ('puzzle-3x3-play-sparse-singletask-task1-v0' -> 'puzzle-3x3').
    """
    splits = name.split("-")
    for i, word in enumerate(splits):
        if word in DATASET_TYPES and i > 0:
            return "-".join(splits[:i])
    raise ValueError(
        f"'{name}': expected an OGBench name with a dataset type (one of {DATASET_TYPES}) after the domain"
    )


def sparse_rewards(rewards):
    """The paper's sparse reward (scene, puzzle): -1 unless every subgoal holds (dense reward 0), else 0."""
    return np.where(np.asarray(rewards) != 0, -1.0, 0.0).astype(np.float32)


class SparseReward(gymnasium.RewardWrapper):
    """Maps OGBench's dense single-task reward (minus the number of unmet subgoals) to `sparse_rewards`."""

    def reward(self, reward):
        return float(sparse_rewards(reward))


class SeededReset(gymnasium.Wrapper):
    """Makes `reset(seed=s)` a function of `s` alone.

    OGBench's resets draw noise from the env's generator *before* reseeding it (the mazes from NumPy's global
    generator), and settle the scene with `action_space.sample()`, so a plain `reset(seed=s)` depends on the
    episodes before it. Seeding all three first lets evaluations repeat exactly and a resumed run replay the
    same episodes as an uninterrupted one.
    """

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            np.random.seed(seed % 2**32)
            self.unwrapped.np_random = np.random.default_rng(seed)
            self.unwrapped.action_space.seed(seed)
        return self.env.reset(seed=seed, options=options)


def make_env(env_cfg) -> gymnasium.Env:
    """A single-task OGBench env for `env_cfg.name`, sparse-rewarded when `env_cfg.sparse`.

    Episodes terminate on success as OGBench defines it, judged on the state before or after each step as
    `env_cfg.success_timing` says (None: the installed OGBench's default); the time limit is OGBench's unless
    `env_cfg.max_episode_steps` sets one (short debug runs). `reset(seed=s)` is deterministic (SeededReset).
    A visual env renders: make it in an env worker (envs/vector.py), never in the trainer.
    """
    return _make(EnvConfig.from_cfg(env_cfg))


def is_visual(name: str) -> bool:
    """Whether `name` is an OGBench visual env (its observations are rendered frames)."""
    return name.startswith(VISUAL)


class FrameSpace(gymnasium.Wrapper):
    """A visual env's state twin showing the visual env's observation space: the spaces, the task and the
    physics of the visual env, for checking and relabelling its dataset; never stepped for observations."""

    def __init__(self, env: gymnasium.Env, observation_space: gymnasium.spaces.Box):
        super().__init__(env)
        self.observation_space = observation_space


def frame_space(name: str) -> gymnasium.spaces.Box:
    """A visual env's observation space from its registration (OGBench's `width` and `height`), unrendered."""
    kwargs = gymnasium.spec(env_id_of(name)).kwargs
    return gymnasium.spaces.Box(0, 255, (kwargs["height"], kwargs["width"], 3), np.uint8)


def make_offline_env(env_cfg) -> gymnasium.Env:
    """The env the trainer checks and relabels a dataset with, and takes its spaces from: `make_env`'s for a
    state env; for a visual env its state twin in a FrameSpace (OGBench's rewards and successes read the
    dataset's qpos and button states, not its frames), so the trainer never renders."""
    cfg = EnvConfig.from_cfg(env_cfg)
    if not is_visual(cfg.name):
        return _make(cfg)
    twin = _make(dataclasses.replace(cfg, name=cfg.name.removeprefix(VISUAL)))
    return FrameSpace(twin, frame_space(cfg.name))


def _make(cfg: EnvConfig) -> gymnasium.Env:
    env_id = env_id_of(cfg.name)
    if env_id not in gymnasium.registry:
        raise _unknown_env(cfg.name)
    timing = {} if cfg.success_timing is None else {"success_timing": cfg.success_timing}
    make = functools.partial(gymnasium.make, env_id, max_episode_steps=cfg.max_episode_steps, **timing)
    # a visual env renders its observation space's example at construction
    env = SeededReset(headless.require_renderer(make) if is_visual(env_id) else make())
    return SparseReward(env) if cfg.sparse else env
