"""Datasets larger than memory: OGBench's sharded 100M and 1B sets, found on disk, read ahead, streamed.

Layout, as OGBench publishes them: `<env.dataset_dir>/<stem>-100m-v0/` (or `-1b-v0`), where the standard
file is `<stem>-v0.npz`, holds shards `<stem>-v0-<i>.npz` ordered by the integer i (zero-padded or not);
`-val.npz` files beside them are not trained on. A generated set of another per-shard size gets its own
directory, e.g. `cube-quadruple-play-100m-v0-ep2-len51-s0/`, so it is never taken for the published one.

Each shard is read as a standard dataset file is (envs/datasets.py): checked against the env, loaded by
OGBench's loader and relabelled by OGBench for each task. `ShardStream` keeps `env.shards_in_memory` of them
in one device store (buffers/stream.py) and reads the next on a background thread while updates run, so a
swap costs a copy to the device, not a disk read.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import gymnasium
import numpy as np

from buffers.store import TransitionStore, host_layout
from buffers.stream import allocate, segment_shape, write_segment
from envs.config import SHARDED_SIZES, EnvConfig
from envs.datasets import UNREADABLE_FILE_ERRORS, check_file, load_relabelled, size_suffix
from envs.errors import DatasetError
from envs.generate import generate_dataset, global_numpy_rng_restored
from envs.suite import dataset_name_of, env_id_of

logger = logging.getLogger(__name__)

SHARD_EPISODES = 1000  # train episodes of a published shard, each of OFFICIAL_EPISODE_STEPS steps


def sharded_dir(env_cfg, seed: int) -> Path:
    """`<env.dataset_dir>/<stem>-<env.dataset_size>-v0`, with a size suffix for unofficial shard sizes."""
    cfg = EnvConfig.from_cfg(env_cfg)
    if cfg.dataset_size is None:
        raise ValueError(
            f"env.dataset_size: expected one of {list(SHARDED_SIZES)} for a sharded set, found null"
        )
    stem, version = dataset_name_of(cfg.name).rsplit("-", 1)
    name = f"{stem}-{cfg.dataset_size}-{version}"
    if not cfg.official_size:
        name += size_suffix(cfg.num_episodes, cfg.generate_max_episode_steps, seed)
    return Path(cfg.dataset_dir).expanduser() / name


def shard_file_name(dataset_name: str, index: int) -> str:
    """'cube-quadruple-play-v0-007.npz': the published names pad the index to three digits."""
    return f"{dataset_name}-{index:03d}.npz"


def shard_seed(seed: int, index: int) -> int:
    """The generation seed of shard `index`: a function of (seed, index) alone."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _how_to_get(directory: Path, cfg: EnvConfig, seed: int) -> str:
    overrides = f"env.name={cfg.name} env.dataset_size={cfg.dataset_size} env.dataset_dir={cfg.dataset_dir}"
    if not cfg.official_size:  # the seed names the directory of a set of another shard size
        if cfg.num_episodes is not None:
            overrides += f" env.generate.num_episodes={cfg.num_episodes}"
        if cfg.generate_max_episode_steps is not None:
            overrides += f" env.generate.max_episode_steps={cfg.generate_max_episode_steps}"
        overrides += f" seed={seed}"
    how = f"generate it with `python launch/make_dataset.py {overrides} env.generate.num_shards=N` (it skips "
    how += "complete shards, so rerunning it after an interruption or a deleted shard finishes the set)"
    if cfg.official_size:
        how += (
            f" or download it: `wget -r -np -nH --cut-dirs=2 -A '*.npz' -P {directory.parent} "
            f"https://rail.eecs.berkeley.edu/datasets/ogbench/{directory.name}/`"
        )
    return how


def find_shards(directory: Path, dataset_name: str, how_to_get: str = "") -> list[Path]:
    """The shards `<dataset_name>-<i>.npz` of `directory`, ordered by i, which must run 0, 1, ..., N - 1."""
    pattern = re.compile(rf"{re.escape(dataset_name)}-(\d+)\.npz")
    found = {}
    for path in sorted(directory.glob("*.npz")) if directory.is_dir() else []:
        match = pattern.fullmatch(path.name)
        if match is None:
            continue
        index = int(match.group(1))
        if index in found:
            raise DatasetError(
                f"{directory}: shard index {index} appears twice ({found[index].name} and {path.name}); "
                "expected one file per index"
            )
        found[index] = path
    hint = f"; {how_to_get}" if how_to_get else ""
    if not found:
        raise DatasetError(
            f"{directory}: expected shards '{dataset_name}-<i>.npz' (i = 0, 1, ...), found none{hint}"
        )
    missing = sorted(set(range(max(found) + 1)) - set(found))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise DatasetError(
            f"{directory}: expected shards 0 .. {max(found)} with no gap, found {len(found)}; missing "
            f"indices {shown}{hint}"
        )
    return [found[index] for index in sorted(found)]


def _episodes_and_steps(path: Path, how_to_get: str) -> tuple[int, int]:
    try:
        with np.load(path) as file:
            terminals = file["terminals"]
    except (*UNREADABLE_FILE_ERRORS, KeyError) as error:
        raise DatasetError(
            f"{path} cannot be read as a shard ({type(error).__name__}: {error}); delete it and {how_to_get}"
        ) from error
    return int(np.count_nonzero(terminals)), len(terminals)


def check_equal_shards(paths: Sequence[Path], how_to_get: str = "") -> tuple[int, int]:
    """(episodes, steps) of every shard, read from their terminals; a DatasetError names any odd shard.

    Equal shards have equal transitions and state rows, so each fits the same segment of the device store.
    """
    first = _episodes_and_steps(paths[0], how_to_get)
    for path in paths[1:]:
        found = _episodes_and_steps(path, how_to_get)
        if found != first:
            raise DatasetError(
                f"{path}: {found[1]} steps in {found[0]} episodes, but {paths[0].name} has {first[1]} steps "
                f"in {first[0]} episodes; every shard of {path.parent} must have the same episodes and steps"
            )
    return first


def locate_shards(env_cfg, seed: int) -> list[Path]:
    """The shards of `env_cfg`'s sharded set, ordered and checked to be equal in size (see `find_shards`)."""
    cfg = EnvConfig.from_cfg(env_cfg)
    directory = sharded_dir(env_cfg, seed)
    how_to_get = _how_to_get(directory, cfg, seed)
    paths = find_shards(directory, dataset_name_of(cfg.name), how_to_get)
    episodes, steps = check_equal_shards(paths, how_to_get)
    logger.info(
        "dataset: %d shards of %d steps in %d episodes, %d in memory, a swap every %d updates -> %s",
        len(paths),
        steps,
        episodes,
        cfg.shards_in_memory,
        cfg.shard_interval,
        directory,
    )
    return paths


class _TaskFixed(gymnasium.Wrapper):
    """A single-task env reset once, here; its later resets do nothing, so its task (all that OGBench's
    relabelling reads) stays set and relabelling on a reader thread moves no random generator."""

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        with global_numpy_rng_restored():
            env.reset(seed=0)

    def reset(self, *, seed=None, options=None):
        return None


class ShardLoader:
    """Reads one shard as a standard dataset file is read: `check_file`, then `load_relabelled`.

    names: the single-task env names of the tasks (one domain), in the order of the reward rows.
    Its envs are its own and never stepped; one thread at a time may call it.
    """

    def __init__(self, names: Sequence[str], sparse: bool, how_to_fix: str = ""):
        datasets = {dataset_name_of(name) for name in names}
        if len(datasets) != 1:
            raise ValueError(
                f"shard tasks: expected single-task names of one dataset, found {sorted(datasets)}"
            )
        self.names, self.sparse, self.how_to_fix = list(names), sparse, how_to_fix
        self.envs = [_TaskFixed(gymnasium.make(env_id_of(name))) for name in names]

    def __call__(self, path: Path) -> dict:
        hint = f"delete it and {self.how_to_fix}" if self.how_to_fix else None
        check_file(Path(path), self.envs[0], self.names[0], hint)
        return load_relabelled(Path(path), self.names[0], self.envs, self.sparse)


def shard_order(num_shards: int, seed: int) -> np.ndarray:
    """The order shards are streamed in, cycled: a permutation drawn from the seed alone."""
    return np.random.default_rng(seed).permutation(num_shards)


class ShardStream:
    """`shards_in_memory` (K) shards resident in one device store, the next read ahead on a thread.

    The q-th shard streamed (q = 0, 1, ...) is `shard_paths[order[q % N]]`. Shards 0 .. K - 1 fill segments
    0 .. K - 1 and swap j writes shard K + j over segment j % K, the oldest. After p swaps (the position) the
    resident shards are q = p .. p + K - 1, shard q in segment q % K: the position alone says what the store
    holds, so a restored stream rebuilds it bit for bit and goes on with the same shards.

    load_fn(path) -> dataset dict (DATASET_KEYS; rewards and masks (tasks, transitions)), e.g. a ShardLoader.
    It runs on the reader thread only. `swap` donates the store it is given.
    """

    def __init__(
        self,
        shard_paths: Sequence[Path],
        load_fn: Callable[[Path], dict],
        seed: int,
        shards_in_memory: int,
    ):
        self.paths = [Path(path) for path in shard_paths]
        if not 1 <= shards_in_memory <= len(self.paths):
            raise ValueError(
                f"env.shards_in_memory: expected 1 .. {len(self.paths)} (the number of shards), found "
                f"{shards_in_memory}"
            )
        self.shards_in_memory = shards_in_memory
        self.order = shard_order(len(self.paths), seed)
        self._load_fn = load_fn
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-reader")
        self._pending: tuple[int, Future] | None = None
        self._shape: tuple[int, int] | None = None
        self.position = 0
        self.waited_s = 0.0  # time swaps spent waiting for the reader: 0 when reading hides behind updates

    def path_of(self, sequence_index: int) -> Path:
        """The file of the q-th shard streamed."""
        return self.paths[self.order[sequence_index % len(self.paths)]]

    def resident(self, position: int | None = None) -> list[Path]:
        """The shard in each segment after `position` swaps (default: now)."""
        position = self.position if position is None else position
        by_segment = {q % self.shards_in_memory: q for q in range(position, position + self.shards_in_memory)}
        return [self.path_of(by_segment[segment]) for segment in range(self.shards_in_memory)]

    def _read(self, sequence_index: int) -> dict[str, np.ndarray]:
        return host_layout(self._load_fn(self.path_of(sequence_index)))

    def _prefetch(self, sequence_index: int) -> None:
        if self.shards_in_memory < len(self.paths):  # else every shard is resident: swaps read nothing
            self._pending = (sequence_index, self._reader.submit(self._read, sequence_index))

    def _result(self, sequence_index: int, future: Future) -> dict[str, np.ndarray]:
        """The read shard, once the reader has it; it must have the shape of the others."""
        start = time.perf_counter()
        arrays = future.result()
        self.waited_s += time.perf_counter() - start
        shape = segment_shape(arrays)
        if self._shape is None:
            self._shape = shape
        elif shape != self._shape:
            raise DatasetError(
                f"{self.path_of(sequence_index)}: {shape[0]} transitions in {shape[1]} state rows, but the "
                f"other shards have {self._shape[0]} in {self._shape[1]}; every shard must have the same "
                "episodes and steps"
            )
        return arrays

    def _build(self, position: int) -> TransitionStore:
        indices = range(position, position + self.shards_in_memory)
        futures = [self._reader.submit(self._read, q) for q in indices]
        store = None
        for q, future in zip(indices, futures, strict=True):
            arrays = self._result(q, future)
            store = allocate(arrays, self.shards_in_memory) if store is None else store
            store = write_segment(store, q % self.shards_in_memory, arrays)
        self.position = position
        self._prefetch(position + self.shards_in_memory)
        return store

    def initial_store(self) -> TransitionStore:
        """The store at position 0: the first K shards of the order; starts reading the next."""
        return self._build(0)

    def swap(self, store: TransitionStore) -> TransitionStore:
        """The next shard written over the oldest segment of `store` (donated); reads the one after."""
        sequence_index = self.position + self.shards_in_memory
        if self.shards_in_memory < len(self.paths):
            pending_index, future = self._pending
            if pending_index != sequence_index:  # `_build` always leaves this shard pending
                raise RuntimeError(
                    f"shard stream: expected shard {sequence_index} pending, found {pending_index}"
                )
            arrays = self._result(sequence_index, future)
            store = write_segment(store, sequence_index % self.shards_in_memory, arrays)
            self._prefetch(sequence_index + 1)
        self.position += 1
        return store

    def state(self) -> dict:
        """What a checkpoint keeps: the position and, to check it against on restore, the resident shards."""
        return {"position": self.position, "resident": [path.name for path in self.resident()]}

    def restore(self, state: dict) -> TransitionStore:
        """The store as it was when `state` was taken, rebuilt from the files; the stream goes on."""
        position = int(state["position"])
        expected = [path.name for path in self.resident(position)]
        if list(state["resident"]) != expected:
            raise ValueError(
                f"shard stream state: at position {position} the checkpoint had {list(state['resident'])} "
                f"resident, but these shards and this seed give {expected}; expected the same shard "
                "directory and seed as the interrupted run"
            )
        return self._build(position)

    def close(self) -> None:
        """Stops the reader thread (a read in progress is finished and dropped)."""
        self._reader.shutdown(wait=True, cancel_futures=True)
        self._pending = None

    def __enter__(self) -> ShardStream:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_stream(env_cfg, seed: int, names: Sequence[str] | None = None) -> ShardStream:
    """The stream of `env_cfg`'s sharded set: its shards (`locate_shards`) read by a ShardLoader for the
    tasks `names` (default: `env.name` alone), `env.shards_in_memory` resident, in the order of `seed`."""
    cfg = EnvConfig.from_cfg(env_cfg)
    paths = locate_shards(env_cfg, seed)
    how_to_fix = _how_to_get(sharded_dir(env_cfg, seed), cfg, seed)
    loader = ShardLoader([cfg.name] if names is None else names, cfg.sparse, how_to_fix)
    return ShardStream(paths, loader, seed, cfg.shards_in_memory)


def generate_shards(env_cfg, seed: int) -> dict:
    """Writes the missing shards 0 .. N - 1 of `env_cfg`'s sharded set with OGBench's oracles.

    Shard i is `generate_dataset` seeded by `shard_seed(seed, i)` (its episodes in parallel over
    `env.generate.workers` processes) under its published name; complete shards are kept, so an interrupted
    generation resumes where it stopped. Returns the directory, the shards written and kept, and the steps/s
    measured over the shards written.
    """
    cfg = EnvConfig.from_cfg(env_cfg)
    directory = sharded_dir(env_cfg, seed)
    dataset_name = dataset_name_of(cfg.name)
    num_shards = cfg.num_shards or SHARDED_SIZES[cfg.dataset_size]
    episodes = cfg.num_episodes or SHARD_EPISODES
    written, kept, steps, seconds = [], [], 0, 0.0
    for index in range(num_shards):
        path = directory / shard_file_name(dataset_name, index)
        if path.is_file():  # train files are renamed into place only when complete (envs/generate.py)
            kept.append(path)
            continue
        stats = generate_dataset(
            dataset_name,
            path,
            num_episodes=episodes,
            max_episode_steps=cfg.generate_max_episode_steps,
            workers=cfg.workers,
            seed=shard_seed(seed, index),
        )
        logger.info(
            "dataset: shard %d/%d written (%.0f steps/s) -> %s",
            index + 1,
            num_shards,
            stats["steps_per_second"],
            path,
        )
        written.append(path)
        steps, seconds = steps + stats["steps"], seconds + stats["seconds"]
    paths = find_shards(directory, dataset_name)
    episodes_found, steps_found = check_equal_shards(paths, _how_to_get(directory, cfg, seed))
    if episodes_found != episodes:
        raise DatasetError(
            f"{directory}: its shards hold {episodes_found} episodes each, expected {episodes} "
            "(env.generate.num_episodes); delete them or choose another env.dataset_dir"
        )
    return dict(
        directory=directory,
        written=written,
        kept=kept,
        shards=len(paths),
        episodes_per_shard=episodes_found,
        steps_per_shard=steps_found,
        steps_per_second=steps / seconds if seconds else None,
        workers=cfg.workers,
    )
