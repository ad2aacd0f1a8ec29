"""Best-of-N action selection: draw N candidates per observation, keep the one a critic scores highest.

Shared by QC (agents/qc.py), IFQL (agents/ifql.py) and DQC (agents/dqc.py); the agents differ only in which
inputs the behaviour model and the critic see. Each network encodes an observation once and its N
candidates share the features (networks.encode): with pixels the encoders are most of the cost.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from agents import critic as td
from agents.networks import apply_encoded, encode


def repeat(observations: jax.Array, num_samples: int) -> jax.Array:
    """(batch, *obs) -> (batch, num_samples, *obs): each candidate beside its observation. Repeat
    features (networks.encode), not images, so that an encoder runs once per observation."""
    batch, *shape = observations.shape
    return jnp.broadcast_to(observations[:, None], (batch, num_samples, *shape))


def candidates(behavior, params: dict, observations: jax.Array, noise: Any, num_samples: int) -> jax.Array:
    """num_samples clipped behaviour samples per observation, all in one batched call.

    behavior: an agents.behavior model; observations: (batch, *obs); noise: behavior.sampling_noise(key,
    (batch, num_samples)) -> (batch, num_samples, policy_dim)
    """
    encoded = behavior.encode(params, observations)
    return behavior.sample(params, repeat(encoded, num_samples), noise)


def best(critic_net, params: dict, observations: jax.Array, chunks: jax.Array, q_agg: str) -> jax.Array:
    """The chunk of each row that the critic ensemble scores highest, its values reduced by q_agg.

    observations: (batch, *obs); chunks: (batch, num_samples, policy_dim) -> (batch, policy_dim)
    """
    encoded = repeat(encode(critic_net, params, observations), chunks.shape[1])
    qs = apply_encoded(critic_net, params, encoded, chunks)
    return select(chunks, td.aggregate(qs, q_agg))


def select(candidates: jax.Array, scores: jax.Array) -> jax.Array:
    """The highest-scoring candidate of each row (the first on ties).

    candidates: (batch, num_samples, dim); scores: (batch, num_samples) -> (batch, dim)
    """
    best = jnp.argmax(scores, axis=1)
    return jnp.take_along_axis(candidates, best[:, None, None], axis=1)[:, 0]
