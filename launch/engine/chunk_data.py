"""The replay of agents that learn from chunk batches: the offline data stored once for every run of a vector
(one file per distinct dataset, a reward row per task), a goal-relabelled replay (oraclerep), or a sharded
100M/1B set streamed through a few resident shards."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from omegaconf import DictConfig, ListConfig

import buffers
import buffers.stream
import envs
from launch.engine.vector import Member

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Data:
    """A vector's replay, the agents' input sizes, each run's dataset provenance (envs/provenance.py) and
    the shard stream of a sharded set (else None). `obs_shape` is the shape of one observation an agent
    sees: (obs_dim,) for states, (64, 64, 3 * frame_stack) uint8 frames, oldest first, for visual envs."""

    replay: object
    obs_dim: int
    action_dim: int
    records: list[dict]
    stream: object = None
    obs_shape: tuple = ()

    def __post_init__(self):
        self.obs_shape = tuple(self.obs_shape) or (self.obs_dim,)

    @property
    def agent_obs(self) -> int | tuple[int, ...]:
        """What agents.make_agent takes: obs_dim for state vectors, the image shape for frames."""
        return self.obs_shape if len(self.obs_shape) > 1 else self.obs_dim


def offline_ratios(members: list[Member]) -> list[float] | None:
    """Each run's `offline_ratio`, or None when the runs pool online data with the offline data."""
    ratios = [member.cfg.offline_ratio for member in members]
    return None if ratios[0] is None else ratios


def chunk_data(cfg: DictConfig, members: list[Member]) -> Data:
    if cfg.env.get("goal_conditioned"):
        return goal_data(members)
    if cfg.env.get("dataset_size"):
        return streamed_data(cfg, members)
    datasets, dataset_index, task_rows, records = load_datasets(members)
    frame_stack = frame_stack_of(cfg.env)
    replay = buffers.make_replay(
        datasets,
        dataset_index,
        task_rows,
        cfg.buffer_size,
        cfg.online_steps,
        offline_ratios(members),
        frame_stack,
    )
    obs_shape = stacked_shape(datasets[0]["observations"].shape[1:], frame_stack)
    return Data(replay, obs_shape[-1], datasets[0]["actions"].shape[-1], records, obs_shape=obs_shape)


def stacked_shape(frame_shape: tuple, frame_stack: int) -> tuple:
    """The shape of one observation an agent sees: `frame_stack` frames concatenated on the last axis."""
    return (*frame_shape[:-1], frame_shape[-1] * frame_stack)


def frame_stack_of(env_cfg) -> int:
    """Frames per observation (`env.frame_stack`, visual envs; 1 = none)."""
    frame_stack = int(env_cfg.get("frame_stack") or 1)
    if frame_stack < 1:
        raise ValueError(f"env.frame_stack={frame_stack}: give 1 (no stacking) or more frames")
    return frame_stack


def streamed_data(cfg: DictConfig, members: list[Member]) -> Data:
    """A replay whose offline store holds `env.shards_in_memory` shards of a sharded (100M/1B) set, streamed
    (buffers/stream.py); the shards carry a reward row per task of the vector.

    The runs of a vector share one stream, in the shard order of the vector's first seed.
    """
    first = members[0]
    directories = {envs.shards.sharded_dir(member.cfg.env, member.seed) for member in members}
    if len(directories) > 1:
        raise ValueError(
            f"the runs of a vector stream one sharded set, found {sorted(map(str, directories))}: "
            "sets of a non-published size are per seed, so give one seed"
        )
    # the runs share the stream's swaps, every shard_interval updates
    if isinstance(
        cfg.utd_ratio, ListConfig
    ):  # the runs share the stream's swaps, every shard_interval updates
        raise ValueError(
            f"utd_ratio={list(cfg.utd_ratio)}: a vector streaming a sharded set needs one utd_ratio"
        )
    tasks = list(dict.fromkeys(member.task for member in members))
    names = [next(m for m in members if m.task == task).env_cfg["name"] for task in tasks]
    stream = buffers.stream.open_stream(first.cfg.env, first.seed, names)
    offline = stream.initial_store()
    replay = buffers.replay.replay_over(
        offline,
        [0] * len(members),
        [offline.capacity] * len(members),
        [tasks.index(member.task) for member in members],
        cfg.buffer_size,
        cfg.online_steps,
        offline_ratios(members),
    )
    log.info("shards: %d in the set, resident %s", len(stream.paths), resident_shards(stream))
    per_shard = offline.capacity // cfg.env.shards_in_memory
    record = envs.provenance.describe_shards(
        envs.shards.sharded_dir(first.cfg.env, first.seed), stream.paths, per_shard * len(stream.paths)
    )
    return Data(
        replay, offline.observations.shape[-1], offline.actions.shape[-1], [record] * len(members), stream
    )


def resident_shards(stream) -> list[str]:
    return [path.name for path in stream.resident()]


def goal_data(members: list[Member]) -> Data:
    """The goal-relabelled replay of an oraclerep dataset (offline only), shared by every run, and the
    agent's input sizes: the observation followed by the goal representation."""
    paths = {envs.resolve_dataset(member.cfg.env, member.seed) for member in members}
    if len(paths) > 1:
        raise ValueError(f"a goal-conditioned vector trains on one dataset, found {sorted(map(str, paths))}")
    member = members[0]
    env, eval_env, train, _ = envs.goal_conditioned.make_env_and_datasets(member.env_cfg, member.seed)
    env.close()
    eval_env.close()
    record = envs.describe_dataset(member.cfg.env, paths.pop(), len(train["actions"]))
    obs_dim = train["observations"].shape[-1] + train["oracle_reps"].shape[-1]
    return Data(buffers.make_goal_replay(train), obs_dim, train["actions"].shape[-1], [record] * len(members))


def load_datasets(members: list[Member]) -> tuple[list[dict], list[int], list[int], list[dict]]:
    """Each distinct dataset file of the runs, read once, with a reward and mask row per task of the
    vector (OGBench's single-task relabelling; rows of tasks that no run pairs with the file stay 0 and
    are never read); which dataset and row each run uses, and each run's dataset record."""
    tasks = list(dict.fromkeys(member.task for member in members))
    paths = [envs.resolve_dataset(member.cfg.env, member.seed) for member in members]
    files = list(dict.fromkeys(paths))
    datasets, records = [], []
    for path in files:
        on_file: dict = {}  # the first run of each task that reads this file
        for member, member_path in zip(members, paths, strict=True):
            if member_path == path:
                on_file.setdefault(member.task, member)
        runs = list(on_file.values())
        train = envs.load_tasks([member.env_cfg for member in runs], runs[0].seed)
        rows = np.zeros((2, len(tasks), len(train["rewards"][0])), np.float32)
        rows[:, [tasks.index(task) for task in on_file]] = train["rewards"], train["masks"]
        datasets.append({**train, "rewards": rows[0], "masks": rows[1]})
        records.append(envs.describe_dataset(runs[0].cfg.env, path, rows.shape[-1]))
    sizes = {(d["observations"].shape[-1], d["actions"].shape[-1]) for d in datasets}
    if len(sizes) > 1:
        raise ValueError(
            f"the runs of a vector must share observation and action sizes, found {sorted(sizes)}"
        )
    dataset_index = [files.index(path) for path in paths]
    task_rows = [tasks.index(member.task) for member in members]
    return datasets, dataset_index, task_rows, [records[index] for index in dataset_index]
