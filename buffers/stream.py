"""An offline store of K equal segments, one shard of a sharded dataset in each, rewritten in place.

A dataset too large for the device is streamed one shard at a time (envs/shards.py reads the files). Segment k
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

import jax
import jax.numpy as jnp
import numpy as np

from buffers.store import TransitionStore

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
