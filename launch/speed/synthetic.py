"""Random data in the shapes of an env's, for timing: transitions, a replay of a vector of runs, shards in the
published file format."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

import buffers
from buffers import Replay
from envs.file_format import FILE_DTYPES
from envs.suite import dataset_name_of
from launch.engine.chunk_data import frame_stack_of
from launch.engine.fused import insert
from launch.engine.vector import stack


def synthetic_dataset(
    num: int, obs_dim: int, action_dim: int, episode_length: int = 1000, seed: int = 0, frame_shape=None
) -> dict:
    """Random transitions: `num` steps in episodes of `episode_length`; states of `obs_dim` floats, or
    uint8 frames of `frame_shape` (a visual env's)."""
    rng = np.random.default_rng(seed)
    if frame_shape is None:
        states = rng.normal(size=(num + 1, obs_dim)).astype(np.float32)
    else:
        states = rng.integers(0, 256, (num + 1, *frame_shape), np.uint8)
    terminals = np.zeros(num, np.float32)
    terminals[episode_length - 1 :: episode_length] = 1.0
    terminals[-1] = 1.0
    return {
        "observations": states[:-1],
        "next_observations": states[1:],
        "actions": rng.uniform(-1, 1, (num, action_dim)).astype(np.float32),
        "rewards": -rng.integers(0, 3, num).astype(np.float32),
        "masks": np.ones(num, np.float32),
        "terminals": terminals,
    }


def synthetic_replay(cfg, obs_dim: int, action_dim: int, runs: int, frame_shape=None):
    """A replay of synthetic data for `runs` runs, and whether updates sample it as online (mixed) batches.
    With `frame_shape` (a visual env's): 20,000 uint8 frames, sampled as stacks of env.frame_stack."""
    if frame_shape is not None:
        dataset = synthetic_dataset(20_000, obs_dim, action_dim, frame_shape=frame_shape)
        replay = buffers.make_replay(
            [dataset], [0] * runs, [0] * runs, 40_000, 1000, None, frame_stack_of(cfg.env)
        )
        return replay, False
    if cfg.env.get("goal_conditioned"):  # DQC's setting: the observation ends in the goal representation
        dataset = synthetic_dataset(100_000, obs_dim - cfg.env.goal_dim, action_dim)
        dataset["oracle_reps"] = dataset["observations"][:, : cfg.env.goal_dim]
        return buffers.make_goal_replay(dataset), False
    dataset = synthetic_dataset(100_000, obs_dim, action_dim)
    ratios = None if cfg.offline_ratio is None else [cfg.offline_ratio] * runs
    replay = buffers.make_replay([dataset], [0] * runs, [0] * runs, 200_000, 1000, ratios)
    online = cfg.offline_ratio is not None  # mixed sampling needs online data
    if online:
        transitions = synthetic_dataset(1000, obs_dim, action_dim, seed=1)
        replay = insert(
            replay, {key: np.broadcast_to(value, (runs,) + value.shape) for key, value in transitions.items()}
        )
    return replay, online


def write_synthetic_shards(directory: Path, env, name: str, num_shards: int, episodes: int, steps: int):
    """`num_shards` shards of random steps in the published file format of `name`'s env, under their names."""
    _, info = env.reset(seed=0)
    per_step = {
        "observations": env.observation_space.shape,
        "actions": env.action_space.shape,
        **{key: np.shape(info[key]) for key in ("qpos", "qvel", "button_states") if key in info},
    }
    rng = np.random.default_rng(0)
    paths = []
    for index in range(num_shards):
        arrays = {
            key: rng.normal(size=(episodes * steps, *shape)).astype(FILE_DTYPES[key])
            for key, shape in per_step.items()
        }
        arrays["actions"] = np.clip(arrays["actions"], -1, 1)
        arrays["terminals"] = (np.arange(episodes * steps) % steps == steps - 1).astype(bool)
        paths.append(directory / f"{dataset_name_of(name)}-{index:03d}.npz")
        np.savez_compressed(paths[-1], **arrays)
    return paths


def single_run_replay(offline: buffers.TransitionStore, obs_dim: int, action_dim: int) -> Replay:
    """The replay of a vector of one run over all of `offline` (no online data)."""
    segment = buffers.Segment(jnp.zeros(1, jnp.int32), offline.count[None], jnp.zeros(1, jnp.int32))
    return Replay(offline, stack([buffers.empty(obs_dim, action_dim, 1)]), segment, None)
