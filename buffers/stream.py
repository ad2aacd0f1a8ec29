"""A dataset too large for the device, streamed: an offline store of K equal segments, one shard in each.

`ShardStream` keeps K shards resident and reads the next on a background thread while updates run, so a swap
costs a copy to the device, not a disk read; envs/shards.py finds, checks and loads the files. Segment k
holds transitions k*T .. (k+1)*T - 1 and state rows k*R .. (k+1)*R - 1 of one store, where every shard has T
transitions in trajectories whose states take R rows; a shard's `obs_rows` are shifted by k*R, so the store
is exactly `from_dataset` of the K shards back to back and `gather_chunks` and the samplers work unchanged.
Each shard ends with a terminal, so a chunk that runs from one segment into the next is cut by `valid` there,
as between two trajectories of one shard.

Replacing a segment writes into the store's own buffers (the old store is donated): no second copy of the
store exists on the device at any time.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from buffers.store import TransitionStore, host_layout
from envs.config import EnvConfig
from envs.errors import DatasetError
from envs.shards import locate_shards, shard_loader

SEGMENT_KEYS = ("observations", "obs_rows", "actions", "rewards", "masks", "terminals")


def segment_shape(arrays: dict[str, np.ndarray]) -> tuple[int, int]:
    """(transitions, state rows) of a segment."""
    return len(arrays["obs_rows"]), len(arrays["observations"])


def allocate(like: dict[str, np.ndarray], num_segments: int) -> TransitionStore:
    """A store of `num_segments` segments shaped like `like` (a `store.host_layout` result), all zero.

    count, oldest and rows_written already say the store is full: every segment is written before sampling.
    """
    transitions, rows = segment_shape(like)
    return TransitionStore(
        observations=jnp.zeros((num_segments * rows, *like["observations"].shape[1:]), jnp.float32),
        obs_rows=jnp.zeros((num_segments * transitions,), jnp.int32),
        actions=jnp.zeros((num_segments * transitions, *like["actions"].shape[1:]), jnp.float32),
        rewards=jnp.zeros((len(like["rewards"]), num_segments * transitions), jnp.float32),
        masks=jnp.zeros((len(like["masks"]), num_segments * transitions), bool),
        terminals=jnp.zeros((num_segments * transitions,), bool),
        count=jnp.asarray(num_segments * transitions, jnp.int32),
        oldest=jnp.zeros((), jnp.int32),
        rows_written=jnp.asarray(num_segments * rows, jnp.int32),
    )


@functools.partial(jax.jit, donate_argnums=(0,))
def _write(target: dict, segment: jax.Array, arrays: dict) -> dict:
    transitions, rows = arrays["obs_rows"].shape[0], arrays["observations"].shape[0]
    first, first_row = segment * transitions, segment * rows

    def put(key, values, start, axis=0):
        index = [jnp.zeros((), jnp.int32)] * target[key].ndim
        index[axis] = start
        return jax.lax.dynamic_update_slice(target[key], values.astype(target[key].dtype), index)

    return {
        "observations": put("observations", arrays["observations"], first_row),
        "obs_rows": put("obs_rows", arrays["obs_rows"] + first_row, first),
        "actions": put("actions", arrays["actions"], first),
        "rewards": put("rewards", arrays["rewards"], first, axis=1),
        "masks": put("masks", arrays["masks"], first, axis=1),
        "terminals": put("terminals", arrays["terminals"], first),
    }


def write_segment(store: TransitionStore, segment: int, arrays: dict[str, np.ndarray]) -> TransitionStore:
    """`store` with segment `segment` holding `arrays` (a `store.host_layout` result), written in place.

    The arrays of `store` are donated: use only the returned store afterwards (its count, oldest and
    rows_written are the same objects). One compilation serves every segment.
    """
    transitions, rows = segment_shape(arrays)
    num_segments = store.capacity // transitions
    fits = store.capacity == num_segments * transitions and store.obs_capacity == num_segments * rows
    if not (fits and 0 <= segment < num_segments):
        raise ValueError(
            f"a store of {store.capacity} transitions in {store.obs_capacity} state rows has no segment "
            f"{segment} of {transitions} transitions in {rows} rows"
        )
    # Only the segment arrays are donated: count, oldest and rows_written stay valid for whoever holds them
    # (e.g. a `Segment.whole` of this store).
    target = {key: getattr(store, key) for key in SEGMENT_KEYS}
    written = _write(target, jnp.asarray(segment, jnp.int32), {key: arrays[key] for key in SEGMENT_KEYS})
    return store.replace(**written)


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
    """The stream of `env_cfg`'s sharded set: its shards (envs/shards.py `locate_shards`) read by its
    `shard_loader` for the tasks `names` (default: `env.name` alone), `env.shards_in_memory` resident, in the
    order of `seed`."""
    paths = locate_shards(env_cfg, seed)
    loader = shard_loader(env_cfg, seed, names)
    return ShardStream(paths, loader, seed, EnvConfig.from_cfg(env_cfg).shards_in_memory)
