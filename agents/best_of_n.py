"""Best-of-N action selection: draw N candidates per observation, keep the one a critic scores highest.

Shared by QC (agents/qc.py) and DQC (agents/dqc.py); the agents differ only in which inputs the behaviour
model and the critic see.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def repeat(observations: jax.Array, num_samples: int) -> jax.Array:
    """(batch, *obs) -> (batch, num_samples, *obs): each candidate beside its observation (a state vector
    or an image)."""
    batch, *shape = observations.shape
    return jnp.broadcast_to(observations[:, None], (batch, num_samples, *shape))


def select(candidates: jax.Array, scores: jax.Array) -> jax.Array:
    """The highest-scoring candidate of each row (the first on ties).

    candidates: (batch, num_samples, dim); scores: (batch, num_samples) -> (batch, dim)
    """
    best = jnp.argmax(scores, axis=1)
    return jnp.take_along_axis(candidates, best[:, None, None], axis=1)[:, 0]
