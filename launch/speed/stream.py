"""Offline updates/s with a sharded dataset streamed through one resident shard, against all of it resident
(`python launch/benchmark.py --stream`)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import agents
import buffers
import envs
from buffers import Replay
from buffers.stream import ShardStream
from envs.shards import ShardLoader
from launch.engine import settings
from launch.engine.fused import fused_updates
from launch.engine.vector import stack
from launch.speed.synthetic import single_run_replay, write_synthetic_shards


def streamed_updates(
    agent, rng, replay: Replay, stream: ShardStream | None, dispatches: int, *, swap_every, **kw
):
    """`dispatches` calls of `fused_updates(num_updates=swap_every)`, each followed by a shard swap (none when
    `stream` is None): the train loop's pattern, the swap waiting only when the reader has fallen behind."""
    for _ in range(dispatches):
        agent, rng, metrics, _, _ = fused_updates(agent, rng, replay, jnp.int32([swap_every]), **kw)
        if stream is not None:
            replay = replay.replace(offline=stream.swap(replay.offline))
    jax.block_until_ready(metrics)
    return agent, rng, replay


def bench_stream(cfg, repeats: int, swap_every: int, num_shards: int, shard_steps: tuple) -> dict:
    """Offline updates/s of the agent of run config `cfg` with one shard resident and a swap every
    `swap_every` updates, against the same shards all resident in one store; the shards are random steps in
    the env's file format."""
    agent_cfg = settings.agent_settings(cfg, envs.domain_of(cfg.env.name))
    env = envs.make_env(cfg.env)
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    loader = ShardLoader([cfg.env.name], cfg.env.sparse)
    with tempfile.TemporaryDirectory() as directory:
        paths = write_synthetic_shards(Path(directory), env, cfg.env.name, num_shards, *shard_steps)
        resident = buffers.from_dataset(buffers.replay.concatenate([loader(path) for path in paths])[0])
        stream = ShardStream(paths, loader, seed=0, shards_in_memory=1)
        streamed = stream.initial_store()
        replays = {
            "resident": (single_run_replay(resident, obs_dim, action_dim), None),
            "streamed": (single_run_replay(streamed, obs_dim, action_dim), stream),
        }
        agent, rng = (
            stack([agents.make_agent(agent_cfg, 0, obs_dim, action_dim)]),
            jax.random.PRNGKey(0)[None],
        )
        dispatches = max(1, 200 // swap_every)
        seconds = {name: [] for name in replays}
        for repeat in range(repeats + 1):  # the first round compiles
            for name, (replay, source) in replays.items():  # alternated, so load on the machine hits both
                start = time.perf_counter()
                agent, rng, replay = streamed_updates(
                    agent,
                    rng,
                    replay,
                    source,
                    dispatches,
                    swap_every=swap_every,
                    batch_size=cfg.batch_size,
                    online=False,
                )
                replays[name] = (replay, source)
                if repeat:
                    seconds[name].append(time.perf_counter() - start)
        swaps, waited = stream.position, stream.waited_s
        stream.close()
    updates = dispatches * swap_every
    speed = {name: updates / float(np.median(times)) for name, times in seconds.items()}
    return {
        "env": cfg.env.name,
        "batch_size": cfg.batch_size,
        "hidden_dims": agent_cfg.get("hidden_dims"),
        "shards": num_shards,
        "steps_per_shard": shard_steps[0] * shard_steps[1],
        "swap_every_updates": swap_every,
        "updates_per_s_resident": round(speed["resident"], 2),
        "updates_per_s_streamed": round(speed["streamed"], 2),
        "streamed_over_resident": round(speed["streamed"] / speed["resident"], 3),
        "swaps": swaps,
        "seconds_swaps_waited_for_the_reader": round(waited, 3),
    }
