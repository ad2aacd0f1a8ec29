"""EXPO's edit policy (Dong et al. 2025), shared by QAM-E (agents/qam.py) and FEdit (agents/fedit.py): a
tanh-Gaussian on (s, a) whose sample, times edit_scale, is added to a flow's action and the sum clipped.

It maximises Q of the edited action with SAC's entropy term and automatic temperature
(agents/tanh_gaussian.py), as both of the authors' agents do (ColinQiyangLi/qam agents/qam.py and
agents/fedit.py, `edit_actor` and `edit_alpha` / `alpha`). The agent holds its parameters under
`params["edit"]` and `params["log_temperature"]`; the flow whose action is edited, and the critic that
scores it, are the agent's.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from agents import tanh_gaussian as tg


def network(hidden_dims: tuple[int, ...], policy_dim: int) -> tg.TanhGaussianActor:
    """The edit policy: QAM's TanhNormal (a GELU MLP, its last hidden layer activated, no layer norm) over the
    concatenated observation and flat action (batch, obs_dim + policy_dim), with policy_dim outputs."""
    return tg.TanhGaussianActor(hidden_dims, policy_dim, rlpd_style=False)


def init(
    net: tg.TanhGaussianActor, key: jax.Array, observations: jax.Array, actions: jax.Array, temperature: float
) -> dict:
    """The edit policy's parameters and its log-temperature, to merge into the agent's params."""
    return {
        "edit": net.init(key, jnp.concatenate([observations, actions], axis=-1)),
        "log_temperature": jnp.log(jnp.float32(temperature)),
    }


def sample(net: tg.TanhGaussianActor, params: dict, observations: jax.Array, actions: jax.Array, noise):
    """The edit tanh(mu + std * noise) (..., policy_dim) of `actions` (..., policy_dim) at `observations`
    (..., obs_dim) for standard normals `noise`, and its log-probabilities (...,)."""
    inputs = jnp.concatenate([observations, actions], axis=-1)
    return tg.sample(*tg.distribution(net, params["edit"], inputs), noise)


def edited(actions: jax.Array, edit: jax.Array, edit_scale) -> jax.Array:
    """clip(a + edit_scale * edit, -1, 1): the action the agent executes and the critic scores."""
    return jnp.clip(actions + edit * edit_scale, -1.0, 1.0)


def loss(
    net: tg.TanhGaussianActor,
    params: dict,
    observations: jax.Array,
    actions: jax.Array,
    noise: jax.Array,
    edit_scale,
    q_value: Callable[[jax.Array], jax.Array],
    target_entropy,
) -> tuple[jax.Array, dict]:
    """SAC on the edit of `actions` (the flow's, held fixed; (batch, policy_dim)):
    -Q(s, clip(a + edit_scale * edit)) + temperature * log pi(edit | s, a), the temperature held fixed, plus
    the temperature's own loss towards `target_entropy` nats. q_value: the critics' mean (batch,) at the
    edited actions, the critic held fixed (the agent's)."""
    edit, log_probs = sample(net, params, observations, actions, noise)
    q_loss = -q_value(edited(actions, edit, edit_scale)).mean()
    entropy_loss = (log_probs * jnp.exp(jax.lax.stop_gradient(params["log_temperature"]))).mean()
    temperature_loss, temperature_info = tg.temperature_loss(
        params["log_temperature"], -log_probs.mean(), target_entropy
    )
    total = q_loss + entropy_loss + temperature_loss
    return total, {
        "edit_loss": total,
        "q_loss": q_loss,
        "entropy_loss": entropy_loss,
        "entropy": -log_probs.mean(),
        **temperature_info,
    }
