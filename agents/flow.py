"""Flow matching over action chunks: the behaviour-cloning loss and Euler sampling."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from agents.networks import apply_encoded, encode

VelocityFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def flow_matching_loss(
    velocity: VelocityFn,
    observations: jax.Array,
    actions: jax.Array,
    x0: jax.Array,
    times: jax.Array,
    weights: jax.Array | None,
) -> jax.Array:
    """||v(s, x_u, u) - (x1 - x0)||^2, x_u = (1 - u) x0 + u x1, for caller-drawn x0 ~ N(0, I), u ~ U[0, 1].

    actions: (batch, steps, action_dim) target chunk x1; x0: (batch, steps * action_dim); times: (batch, 1);
    weights: (batch, steps) per-step weights (the chunk's `valid`) or None for an unweighted mean.
    """
    batch, steps, action_dim = actions.shape
    x1 = actions.reshape(batch, -1)
    x_u = (1.0 - times) * x0 + times * x1
    error = jnp.square(velocity(observations, x_u, times) - (x1 - x0)).reshape(batch, steps, action_dim)
    if weights is None:
        return error.mean()
    return (error * weights[..., None]).mean()


def euler_sample(
    velocity: VelocityFn, observations: jax.Array, noise: jax.Array, num_steps: int
) -> jax.Array:
    """Integrate dx/du = v(s, x, u) from x0 = noise over u in [0, 1] in `num_steps` Euler steps, then clip.

    observations: whatever `velocity` takes first; for a network with an encoder, its features
    (networks.encode), so that the steps share one encoding.
    """
    x = noise
    for step in range(num_steps):
        times = jnp.full((*noise.shape[:-1], 1), step / num_steps)
        x = x + velocity(observations, x, times) / num_steps
    return jnp.clip(x, -1.0, 1.0)


def network_velocity(net: nn.Module, params: dict) -> VelocityFn:
    """v(features, x, u) of a VectorField `net` on features it encoded itself (networks.encode)."""
    return lambda encoded, x, u: apply_encoded(net, params, encoded, x, u)


def sample_flow(
    net: nn.Module, params: dict, observations: jax.Array, noise: jax.Array, num_steps: int
) -> jax.Array:
    """`euler_sample` of a VectorField network whose steps share one encoding of `observations`;
    differentiable in `params` (backpropagation through the ODE, FBRAC). noise: (batch, policy_dim)."""
    features = encode(net, params, observations)
    return euler_sample(network_velocity(net, params), features, noise, num_steps)
