"""Classifier guidance of a behaviour flow by a time-conditioned critic Q(s, x_u, u), as QAM's CGQL
(Li & Levine 2026; ColinQiyangLi/qam agents/cgql.py): the critic's action gradient stands in for the score of
exp(inv_temp Q), and the critic learns its values at noisy actions x_u by distillation from Q(s, a, 1).

A time-conditioned critic here is an `agents.networks.Critic` whose action input is [x, u]: the authors'
critic concatenates (s, x, u) the same way, and u = 1 reads a clean action.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from agents.flow import VelocityFn

MODES = (
    "simple",
    "mse",
    "linex",
)  # the score's critic: Q at u = 1, or a time-conditioned one fit by MSE or LINEX
ScoreFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def with_time(actions: jax.Array, times: jax.Array) -> jax.Array:
    """The time-conditioned critic's action input [x, u]: (batch, policy_dim + 1); times: (batch, 1)."""
    return jnp.concatenate([actions, jnp.broadcast_to(times, (*actions.shape[:-1], 1))], axis=-1)


def guided_euler_sample(
    velocity: VelocityFn,
    score: ScoreFn,
    observations: jax.Array,
    noise: jax.Array,
    num_steps: int,
    inv_temp,
    guidance_coef,
) -> jax.Array:
    """Euler steps of v(s, x, u) + guidance_coef / u * ((1 - u) inv_temp grad_x Q + x) from x0 = noise, then
    clip. The first step (u = 0) is unguided, where 1 / u diverges; inv_temp <= 0 turns guidance off, as the
    authors' `if inv_temp > 0`.

    score(observations, x, u): grad_x of the critic's ensemble mean at (x, u), (batch, policy_dim).
    """
    x = noise
    for step in range(num_steps):
        times = jnp.full((*noise.shape[:-1], 1), step / num_steps)
        v = velocity(observations, x, times)
        if step > 0:
            guided = (
                v + (score(observations, x, times) * (1.0 - times) * inv_temp + x) * guidance_coef / times
            )
            v = jnp.where(inv_temp > 0, guided, v)
        x = x + v / num_steps
    return jnp.clip(x, -1.0, 1.0)


def distillation_loss(
    noisy_qs: jax.Array, target_qs: jax.Array, weights: jax.Array, mode: str, inv_temp, isd_clip
):
    """The time-conditioned critic's loss at noisy actions against the target critic at the clean action.

    'mse': (Q(s, x_u, u) - Q'(s, a, 1))^2. 'linex' (the authors' Itakura-Saito form, after TMD): with
    d = inv_temp (Q' - Q), exp(d) + inv_temp Q where d <= isd_clip, else d itself (a linear branch that
    bounds the gradient; it omits the inv_temp Q term, as the authors' code does). Mean over critics and
    batch, each chunk weighted by `weights` (valid[h-1]).

    noisy_qs, target_qs: (num_qs, batch); weights: (batch,)
    """
    target_qs = jax.lax.stop_gradient(target_qs)
    if mode == "mse":
        return (jnp.square(noisy_qs - target_qs) * weights).mean()
    if mode == "linex":
        delta = (target_qs - noisy_qs) * inv_temp
        linear = delta > isd_clip
        exponential = jnp.exp(jnp.where(linear, isd_clip, delta)) + noisy_qs * inv_temp
        return (jnp.where(linear, delta, exponential) * weights).mean()
    raise ValueError(f"distillation mode must be 'mse' or 'linex', got {mode!r}")
