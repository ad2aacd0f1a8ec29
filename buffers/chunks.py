"""Chunk batches: the h-step slices of the transition array that chunked critics learn from.

Semantics (spec, "Chunk batches"), for k = 0..h-1 and a start index t:
  actions[k] = a_{t+k}; rewards[k] = sum_{j<=k} gamma^j r_{t+j}; masks[k] = min_{j<=k} m_{t+j};
  terminals[k] = max_{j<=k} d_{t+j}; valid[0] = 1, valid[k] = 1 - terminals[k-1];
  next_observations[k] = s'_{t+k}.
Everything here is pure and jittable, so sampling happens inside the fused update with no host work.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from buffers.store import TransitionStore


def gather_chunks(store: TransitionStore, starts: jax.Array, chunk_length: int, discount: float) -> dict:
    """Chunks starting at the global transition indices `starts: (batch,)`.

    Returns observations (batch, obs_dim), actions (batch, chunk_length, action_dim) and rewards, masks,
    terminals, valid (batch, chunk_length), next_observations (batch, chunk_length, obs_dim).
    """
    slots = store.slot(starts[:, None] + jnp.arange(chunk_length))
    discounts = discount ** jnp.arange(chunk_length, dtype=jnp.float32)
    terminals = jax.lax.cummax(store.terminals[slots].astype(jnp.float32), axis=1)
    rows = store.obs_rows[slots]
    return {
        "observations": store.observations[rows[:, 0] % store.obs_capacity],
        "actions": store.actions[slots],
        "rewards": jnp.cumsum(store.rewards[slots] * discounts, axis=1),
        "masks": jax.lax.cummin(store.masks[slots].astype(jnp.float32), axis=1),
        "terminals": terminals,
        "valid": jnp.concatenate([jnp.ones_like(terminals[:, :1]), 1.0 - terminals[:, :-1]], axis=1),
        "next_observations": store.observations[(rows + 1) % store.obs_capacity],
    }


def sample_starts(store: TransitionStore, key: jax.Array, batch_size: int, chunk_length: int) -> jax.Array:
    """Uniform global start indices over every live index whose whole chunk is stored.

    The store must hold at least `chunk_length` transitions; the train loop guarantees it by starting
    updates only after `start_training` steps.
    """
    num_starts = jnp.maximum(store.size - chunk_length + 1, 1)
    return store.oldest + jax.random.randint(key, (batch_size,), 0, num_starts)


def sample_chunks(
    store: TransitionStore, key: jax.Array, batch_size: int, chunk_length: int, discount: float
) -> dict:
    """A uniformly sampled chunk batch (jittable)."""
    return gather_chunks(store, sample_starts(store, key, batch_size, chunk_length), chunk_length, discount)


def offline_batch_size(batch_size: int, offline_ratio: float) -> int:
    """How many of `batch_size` rows come from the offline data; the rest are online."""
    return round(batch_size * offline_ratio)


def sample_mixed(
    offline: TransitionStore,
    online: TransitionStore,
    key: jax.Array,
    batch_size: int,
    chunk_length: int,
    discount: float,
    offline_ratio: float,
) -> dict:
    """Batch whose first `round(batch_size * offline_ratio)` rows are offline chunks, the rest online.

    offline_ratio = 0.5 is RLPD's symmetric sampling.
    """
    num_offline = offline_batch_size(batch_size, offline_ratio)
    offline_key, online_key = jax.random.split(key)
    parts = []
    if num_offline:
        parts.append(sample_chunks(offline, offline_key, num_offline, chunk_length, discount))
    if batch_size - num_offline:
        parts.append(sample_chunks(online, online_key, batch_size - num_offline, chunk_length, discount))
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=0), *parts)
