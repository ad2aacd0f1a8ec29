"""Networks shared by every agent: MLPs, critic ensembles and flow vector fields."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

default_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


class MLP(nn.Module):
    """Dense layers with GELU and, when `layer_norm`, a LayerNorm after each hidden activation (FQL's MLP).

    `rlpd_style`: ReLU with the LayerNorm before it, Dense -> LayerNorm -> ReLU, as the RLPD reference's
    networks (ColinQiyangLi/qc rlpd_networks/mlp.py).
    """

    hidden_dims: Sequence[int]
    activate_final: bool = False
    layer_norm: bool = False
    rlpd_style: bool = False

    @nn.compact
    def __call__(self, x):
        activation: Callable = nn.relu if self.rlpd_style else nn.gelu
        for i, size in enumerate(self.hidden_dims):
            x = nn.Dense(size, kernel_init=default_init)(x)
            if i + 1 < len(self.hidden_dims) or self.activate_final:
                if self.layer_norm and self.rlpd_style:
                    x = nn.LayerNorm()(x)
                x = activation(x)
                if self.layer_norm and not self.rlpd_style:
                    x = nn.LayerNorm()(x)
        return x


class Critic(nn.Module):
    """Ensemble of `num_qs` Q-networks on (observation, flattened action chunk).

    Returns (num_qs, batch) values; the members share no parameters and run as one batched computation.
    """

    hidden_dims: Sequence[int]
    num_qs: int = 2
    layer_norm: bool = True
    rlpd_style: bool = False  # MLP.rlpd_style

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
        return ensemble((*self.hidden_dims, 1), layer_norm=self.layer_norm, rlpd_style=self.rlpd_style)(
            inputs
        ).squeeze(-1)


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
