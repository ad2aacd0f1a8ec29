"""The tanh-squashed diagonal Gaussian policy and SAC's automatic temperature, shared by the agents that act
(or edit an action) with one: RLPD's policy over a chunk (agents/rlpd.py) and QAM-E's edit policy on
(s, a) (agents/qam.py).

The network gives the means and log-stds of a Gaussian before the tanh; a sample is tanh(means + std * noise)
with caller-drawn standard-normal noise, so every loss stays a plain function of its inputs; its
log-probability carries the tanh's Jacobian. The temperature is exp(log_temperature), a scalar parameter
tuned towards a target entropy.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from agents.networks import MLP, apply_encoded, default_init, features

# ColinQiyangLi/qc rlpd_distributions/tanh_normal.py; ColinQiyangLi/qam utils/networks.py Normal
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def log_prob(pre_tanh: jax.Array, means: jax.Array, log_stds: jax.Array) -> jax.Array:
    """Per-dimension log density of tanh(u), u ~ N(means, exp(log_stds)^2), at the point tanh(pre_tanh).

    log N(u) - log(1 - tanh(u)^2), the Jacobian written as 2 (log 2 - u - softplus(-2u)) so that it stays
    finite where tanh(u) rounds to +-1. All arguments and the result: (..., dim).
    """
    standardised = (pre_tanh - means) * jnp.exp(-log_stds)
    gaussian = -0.5 * jnp.square(standardised) - log_stds - 0.5 * math.log(2 * math.pi)
    log_jacobian = 2.0 * (math.log(2.0) - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh))
    return gaussian - log_jacobian


class TanhGaussianActor(nn.Module):
    """A trunk with its last hidden layer activated and separate Dense heads for the means and the (unclipped)
    log-stds, each (batch, dim). `rlpd_style` (agents.networks.MLP): ReLU with the LayerNorm first, as the
    RLPD reference's TanhNormal (rlpd_distributions/tanh_normal.py); False: GELU, as QAM's TanhNormal
    (ColinQiyangLi/qam utils/networks.py). Both initialise every kernel Xavier-uniform."""

    hidden_dims: tuple[int, ...]
    output_dim: int
    layer_norm: bool = False
    encoder: str | None = None  # agents.networks.features
    rlpd_style: bool = True

    @nn.compact
    def __call__(self, observations, encoded: bool = False):
        trunk = MLP(
            self.hidden_dims, activate_final=True, layer_norm=self.layer_norm, rlpd_style=self.rlpd_style
        )
        x = trunk(features(self.encoder, observations, encoded))
        means = nn.Dense(self.output_dim, kernel_init=default_init, name="mean")(x)
        return means, nn.Dense(self.output_dim, kernel_init=default_init, name="log_std")(x)


def distribution(net: TanhGaussianActor, params: dict, encoded: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Means and clipped log-stds of the pre-tanh Gaussian, each (batch, dim), from the net's features of its
    inputs (agents.networks.encode: the inputs themselves without an encoder)."""
    means, log_stds = apply_encoded(net, params, encoded)
    return means, jnp.clip(log_stds, LOG_STD_MIN, LOG_STD_MAX)


def sample(means: jax.Array, log_stds: jax.Array, noise: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reparameterised samples tanh(means + std * noise) (batch, dim) and their log-probabilities (batch,)."""
    pre_tanh = means + jnp.exp(log_stds) * noise
    return jnp.tanh(pre_tanh), log_prob(pre_tanh, means, log_stds).sum(-1)


def temperature_loss(log_temperature, entropy, target_entropy) -> tuple[jax.Array, dict]:
    """temperature * (entropy - target): lowers the temperature while the policy's entropy is above the
    target (SAC's automatic temperature). entropy: the batch's -mean log pi, no gradient flows into it."""
    temperature = jnp.exp(log_temperature)
    gap = jax.lax.stop_gradient(entropy) - target_entropy
    loss = temperature * gap
    return loss, {"temperature_loss": loss, "temperature": temperature, "entropy_gap": gap}
