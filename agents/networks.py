"""Networks shared by every agent: MLPs, critic ensembles and flow vector fields."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

default_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


class MLP(nn.Module):
    """Dense layers with GELU; LayerNorm after each hidden activation when `layer_norm`."""

    hidden_dims: Sequence[int]
    activate_final: bool = False
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x):
        for i, size in enumerate(self.hidden_dims):
            x = nn.Dense(size, kernel_init=default_init)(x)
            if i + 1 < len(self.hidden_dims) or self.activate_final:
                x = nn.gelu(x)
                if self.layer_norm:
                    x = nn.LayerNorm()(x)
        return x


class Critic(nn.Module):
    """Ensemble of `num_qs` Q-networks on (observation, flattened action chunk).

    Returns (num_qs, batch) values; the members share no parameters and run as one batched computation.
    """

    hidden_dims: Sequence[int]
    num_qs: int = 2
    layer_norm: bool = True

    @nn.compact
    def __call__(self, observations, actions):
        ensemble = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_qs,
        )
        inputs = jnp.concatenate([observations, actions], axis=-1)
        return ensemble((*self.hidden_dims, 1), layer_norm=self.layer_norm)(inputs).squeeze(-1)


class Value(nn.Module):
    """V(s): one MLP on the observation, (batch,) values."""

    hidden_dims: Sequence[int]
    layer_norm: bool = True

    @nn.compact
    def __call__(self, observations):
        return MLP((*self.hidden_dims, 1), layer_norm=self.layer_norm)(observations).squeeze(-1)


class Actor(nn.Module):
    """The mean (or pre-tanh mode) of a Gaussian policy with a fixed std: hidden layers, then a Dense head
    initialised `final_init_scale` times smaller, so the first policy sits near 0 (FQL's Actor)."""

    hidden_dims: Sequence[int]
    output_dim: int
    layer_norm: bool = False
    final_init_scale: float = 0.01

    @nn.compact
    def __call__(self, observations):
        features = MLP(self.hidden_dims, activate_final=True, layer_norm=self.layer_norm)(observations)
        head_init = nn.initializers.variance_scaling(self.final_init_scale, "fan_avg", "uniform")
        return nn.Dense(self.output_dim, kernel_init=head_init)(features)


class VectorField(nn.Module):
    """v(s, x, u) for flow matching, or mu(s, z) for a one-step policy when called without `times`."""

    hidden_dims: Sequence[int]
    output_dim: int
    layer_norm: bool = False

    @nn.compact
    def __call__(self, observations, x, times=None):
        inputs = [observations, x] if times is None else [observations, x, times]
        return MLP((*self.hidden_dims, self.output_dim), layer_norm=self.layer_norm)(
            jnp.concatenate(inputs, axis=-1)
        )
