"""The chunk-level TD target and critic loss shared by every chunked actor-critic agent."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def critic_actions(actions: jax.Array, action_chunking: bool) -> jax.Array:
    """What the critic scores: the flattened chunk (batch, chunk_length * action_dim) when chunking, else
    only the first action (batch, action_dim), as in the n-step ablations (FQL-n, BFN-n).

    actions: (batch, chunk_length, action_dim)
    """
    if action_chunking:
        return actions.reshape(actions.shape[0], -1)
    return actions[:, 0]


def aggregate(qs: jax.Array, how: str) -> jax.Array:
    """Reduce an ensemble's (num_qs, batch) values to (batch,) by 'mean' or 'min'."""
    if how == "mean":
        return qs.mean(axis=0)
    if how == "min":
        return qs.min(axis=0)
    raise ValueError(f"q_agg must be 'mean' or 'min', got {how!r}")


def pessimistic(qs: jax.Array, rho) -> jax.Array:
    """mean - rho * std over an ensemble's (num_qs, batch) values: (batch,). QAM's target (ColinQiyangLi/qam
    agents/qam.py `critic_loss`, rho = 0.5; 0 on humanoidmaze), the std the population one (ddof 0)."""
    return qs.mean(axis=0) - rho * qs.std(axis=0)


def bootstrap(next_qs: jax.Array, how: str, rho) -> jax.Array:
    """The target ensemble's value at s_{t+h}, (batch,): `pessimistic(next_qs, rho)` where the agent sets
    rho (AgentConfig.rho), else its own reduction `aggregate(next_qs, how)`.

    next_qs: (num_qs, batch)
    """
    return aggregate(next_qs, how) if rho is None else pessimistic(next_qs, rho)


def chunk_target(batch: dict, next_q: jax.Array, discount: float) -> jax.Array:
    """rewards[h-1] + gamma^h * masks[h-1] * next_q: discounted chunk reward plus the bootstrap at s_{t+h}.

    next_q: (batch,) target value at s_{t+h}.
    """
    chunk_length = batch["rewards"].shape[1]
    return batch["rewards"][:, -1] + discount**chunk_length * batch["masks"][:, -1] * next_q


def critic_loss(qs: jax.Array, target: jax.Array, valid: jax.Array) -> jax.Array:
    """Mean over critics and batch of (Q_k - target)^2 * valid[h-1]; chunks ending past their episode count 0.

    qs: (num_qs, batch); target: (batch,); valid: (batch, chunk_length)
    """
    return (jnp.square(qs - jax.lax.stop_gradient(target)) * valid[:, -1]).mean()


def regression(qs: jax.Array, target: jax.Array, valid: jax.Array) -> tuple[jax.Array, dict]:
    """`critic_loss` and the metrics every TD critic logs (critic/q_mean, q_max, q_min)."""
    loss = critic_loss(qs, target, valid)
    return loss, {"critic_loss": loss, "q_mean": qs.mean(), "q_max": qs.max(), "q_min": qs.min()}


def expectile_loss(diff: jax.Array, expectile: float, weights: jax.Array) -> jax.Array:
    """IQL's asymmetric square, mean over the batch of |expectile - 1(diff < 0)| * diff^2 * weights.

    diff: (batch,) target - prediction; weights: (batch,).
    """
    weight = jnp.where(diff >= 0, expectile, 1.0 - expectile)
    return (weight * jnp.square(diff) * weights).mean()
