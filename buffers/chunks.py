"""Chunk batches: the h-step slices of the transition array that chunked critics learn from.

Semantics (spec, "Chunk batches"), for k = 0..h-1 and a start index t:
  actions[k] = a_{t+k}; rewards[k] = sum_{j<=k} gamma^j r_{t+j}; masks[k] = min_{j<=k} m_{t+j};
  terminals[k] = max_{j<=k} d_{t+j}; valid[0] = 1, valid[k] = 1 - terminals[k-1];
  next_observations[k] = s'_{t+k}, or with every_next=False only s'_{t+h-1}: all a TD target reads;
  each recorded field (store.fields) f[k] = f_{t+k}.
With `store.frame_stack` K > 1 every state above is the stack of its last K frames on the last axis,
oldest first, a frame before its episode's first repeated from that first frame (FQL's frame stacking).
A trajectory's states sit in consecutive rows, so frame j of the state in row r is row r - min(j, d) with
d the steps since the episode began: stacks are formed by index here, and no stacked copy is stored.
Everything here is pure and jittable, so sampling happens inside the fused update with no host work.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from buffers.store import TransitionStore


def gather_chunks(
    store: TransitionStore,
    starts: jax.Array,
    chunk_length: int,
    discount: float,
    task: jax.Array | int = 0,
    every_next: bool = True,
) -> dict:
    """Chunks starting at the global transition indices `starts: (batch,)`, rewarded by row `task`.

    Returns observations (batch, obs_dim), actions (batch, chunk_length, action_dim) and rewards, masks,
    terminals, valid (batch, chunk_length), next_observations (batch, chunk_length, obs_dim), or with
    `every_next=False` only the last step's, (batch, 1, obs_dim): a TD target reads no other, and every
    step's, as stacks of K frames, are h * K of a visual sample's h * K + K frames (docs/speed.md); and each
    recorded field (batch, chunk_length, ...).
    """
    slots = store.slot(starts[:, None] + jnp.arange(chunk_length))
    discounts = discount ** jnp.arange(chunk_length, dtype=jnp.float32)
    terminals = jax.lax.cummax(store.terminals[slots].astype(jnp.float32), axis=1)
    rows = store.obs_rows[slots]
    since = _steps_since_start(store, starts, chunk_length)
    read = slice(None) if every_next else slice(-1, None)
    return {
        "observations": _stacked(store, rows[:, 0], since[:, 0]),
        "actions": store.actions[slots],
        "rewards": jnp.cumsum(store.rewards[task, slots] * discounts, axis=1),
        "masks": jax.lax.cummin(store.masks[task, slots].astype(jnp.float32), axis=1),
        "terminals": terminals,
        "valid": jnp.concatenate([jnp.ones_like(terminals[:, :1]), 1.0 - terminals[:, :-1]], axis=1),
        "next_observations": _stacked(store, rows[:, read] + 1, since[:, read] + 1),
        **{name: value[slots] for name, value in store.fields.items()},
    }


def _steps_since_start(store: TransitionStore, starts: jax.Array, chunk_length: int) -> jax.Array:
    """(batch, chunk_length): for transition t = start + k, how many transitions of its episode precede it,
    capped at frame_stack - 1 (all a stack needs). Transitions before `store.oldest` count as another
    episode: their rows may be overwritten, so the oldest live frame is repeated instead."""
    back = store.frame_stack - 1
    if back == 0:
        return jnp.zeros((len(starts), chunk_length), jnp.int32)
    index = starts[:, None] + jnp.arange(-back, chunk_length - 1)  # the transitions t - back .. t + h - 2
    ended = store.terminals[store.slot(index)] | (index < store.oldest)
    # since[k] = number of j in 1..back with no episode end among transitions t+k-j .. t+k-1
    since = []
    for k in range(chunk_length):
        before = ended[:, k : k + back][:, ::-1]  # transitions t+k-1, t+k-2, ..., t+k-back
        since.append(jnp.sum(jnp.cumprod(~before, axis=1), axis=1))
    return jnp.stack(since, axis=1).astype(jnp.int32)


def _stacked(store: TransitionStore, rows: jax.Array, since: jax.Array) -> jax.Array:
    """The states in global rows `rows`, as stacks of `store.frame_stack` frames when it exceeds 1; `since`
    (rows' shape) is how many earlier frames of each state's episode are stored, at least frame_stack - 1
    meaning the stack needs no repeat.

    One gather per call, which XLA fuses with the stacking into one pass writing the stacked output: a
    single gather of the observation's and next observation's frames together, split afterwards, measured
    2.8x slower (docs/speed.md)."""
    if store.frame_stack == 1:
        return store.observations[rows % store.obs_capacity]
    lags = jnp.arange(store.frame_stack - 1, -1, -1)  # oldest frame first
    frame_rows = rows[..., None] - jnp.minimum(lags, since[..., None])
    frames = jnp.moveaxis(store.observations[frame_rows % store.obs_capacity], rows.ndim, -2)
    return frames.reshape(frames.shape[:-2] + (-1,))  # (..., *frame_shape[:-1], K * channels)


class Segment(flax.struct.PyTreeNode):
    """A run's part of a shared store: transitions first .. first + size - 1, rewarded by row `task`.

    The members of a vector of runs share one offline store (one copy of each distinct dataset file, its
    tasks as reward rows); each samples only its own dataset and reads its own task's rewards.
    """

    first: jax.Array
    size: jax.Array
    task: jax.Array

    @classmethod
    def whole(cls, store: TransitionStore, task: int = 0) -> Segment:
        return cls(store.oldest, store.size, jnp.asarray(task, jnp.int32))


def num_starts(size: jax.Array, chunk_length: int) -> jax.Array:
    """Start indices whose whole chunk lies among `size` stored transitions."""
    return jnp.maximum(size - chunk_length + 1, 0)


def sample_starts(
    store: TransitionStore, key: jax.Array, batch_size: int, chunk_length: int, segment: Segment | None = None
) -> jax.Array:
    """Uniform global start indices over every index of `segment` (default: all live data) whose whole
    chunk is stored.

    The segment must hold at least `chunk_length` transitions; the train loop guarantees it by starting
    updates only after `start_training` steps.
    """
    segment = Segment.whole(store) if segment is None else segment
    count = jnp.maximum(num_starts(segment.size, chunk_length), 1)
    return segment.first + jax.random.randint(key, (batch_size,), 0, count)


def sample_chunks(
    store: TransitionStore,
    key: jax.Array,
    batch_size: int,
    chunk_length: int,
    discount: float,
    segment: Segment | None = None,
    every_next: bool = True,
) -> dict:
    """A uniformly sampled chunk batch (jittable); `every_next` as in `gather_chunks`."""
    segment = Segment.whole(store) if segment is None else segment
    starts = sample_starts(store, key, batch_size, chunk_length, segment)
    return gather_chunks(store, starts, chunk_length, discount, segment.task, every_next)


def with_recorded(offline_batch: dict, online_batch: dict) -> tuple[dict, dict]:
    """Both batches with the online store's recorded fields: zeros in the offline batch, which has none,
    and `recorded` (batch,), 1 for a row whose fields were recorded, so the agent relabels the others.
    Unchanged when the online store records nothing."""
    names = [name for name in online_batch if name not in offline_batch]
    if not names:
        return offline_batch, online_batch
    size = len(online_batch["observations"])
    missing = {name: jnp.zeros_like(online_batch[name]) for name in names}
    return (
        {**offline_batch, **missing, "recorded": jnp.zeros(size)},
        {**online_batch, "recorded": jnp.ones(size)},
    )


def rows_where(from_first: jax.Array, first: dict, second: dict) -> dict:
    """Row i of batch `first` where from_first[i], else row i of `second`."""
    return jax.tree_util.tree_map(
        lambda a, b: jnp.where(from_first.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), first, second
    )


def sample_mixed(
    offline: TransitionStore,
    online: TransitionStore,
    key: jax.Array,
    batch_size: int,
    chunk_length: int,
    discount: float,
    offline_ratio: jax.Array | float,
    segment: Segment | None = None,
    every_next: bool = True,
) -> dict:
    """Batch whose first `round(batch_size * offline_ratio)` rows are offline chunks, the rest online.

    offline_ratio = 0.5 is RLPD's symmetric sampling. The ratio may be traced (each run of a vector its own):
    a full batch is drawn from each store and the rows chosen, so no array shape depends on it.
    """
    offline_key, online_key = jax.random.split(key)
    args = (batch_size, chunk_length, discount)
    offline_batch = sample_chunks(offline, offline_key, *args, segment, every_next)
    online_batch = sample_chunks(online, online_key, *args, None, every_next)
    from_offline = jnp.arange(batch_size) < jnp.round(batch_size * jnp.asarray(offline_ratio, jnp.float32))
    return rows_where(from_offline, *with_recorded(offline_batch, online_batch))


def sample_pooled(
    offline: TransitionStore,
    online: TransitionStore,
    key: jax.Array,
    batch_size: int,
    chunk_length: int,
    discount: float,
    segment: Segment | None = None,
    every_next: bool = True,
) -> dict:
    """Chunks drawn uniformly from the offline data and the online data together, as from one pool.

    The reference appends online transitions to the dataset and samples the pool uniformly; drawing each
    row's start uniformly over both stores' starts is that distribution without copying the dataset into
    every run's replay.
    """
    segment = Segment.whole(offline) if segment is None else segment
    offline_starts = num_starts(segment.size, chunk_length)
    online_starts = num_starts(online.size, chunk_length)
    index = jax.random.randint(key, (batch_size,), 0, jnp.maximum(offline_starts + online_starts, 1))
    from_offline = index < offline_starts
    offline_batch = gather_chunks(
        offline,
        segment.first + jnp.minimum(index, offline_starts - 1),
        chunk_length,
        discount,
        segment.task,
        every_next,
    )
    online_batch = gather_chunks(
        online, online.oldest + jnp.maximum(index - offline_starts, 0), chunk_length, discount, 0, every_next
    )
    return rows_where(from_offline, *with_recorded(offline_batch, online_batch))
