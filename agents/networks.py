"""Networks shared by every agent: MLPs, critic ensembles, flow vector fields and the pixel encoder.

Every network takes an optional `encoder` name (agents.config.AgentConfig.encoder): None feeds observations
to the MLP as they are (state vectors; the parameters and numbers of a state run are those without this
option), a name of ENCODERS runs that encoder on the observations first, inside the network, so each network
owns its own encoder parameters and trains them with its own loss, as FQL does (seohongpark/fql
agents/fql.py gives the critic, the BC flow and the one-step policy one encoder instance each).

Encode once: an encoder costs far more than the MLP behind it, so an agent that evaluates one network
several times on the same observations (Euler steps, best-of-N copies, a one-step policy and its score)
takes `features = encode(net, params, observations)` once and then `apply_encoded(net, params, features,
...)` as often as it needs, as FQL's `is_encoded` does. Without an encoder both are the plain network, so an
agent is written once for states and pixels and never sees the encoder.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

default_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


class MLP(nn.Module):
    """Dense layers with GELU and, when `layer_norm`, a LayerNorm after each hidden activation (FQL's MLP).

    `rlpd_style`: ReLU with the LayerNorm before it, Dense -> LayerNorm -> ReLU, as the RLPD reference's
    networks (ColinQiyangLi/qc rlpd_networks/mlp.py). `activation` replaces GELU (mish: DDPMNoise).
    """

    hidden_dims: Sequence[int]
    activate_final: bool = False
    layer_norm: bool = False
    rlpd_style: bool = False
    activation: Callable | None = None

    @nn.compact
    def __call__(self, x):
        activation: Callable = self.activation or (nn.relu if self.rlpd_style else nn.gelu)
        for i, size in enumerate(self.hidden_dims):
            x = nn.Dense(size, kernel_init=default_init)(x)
            if i + 1 < len(self.hidden_dims) or self.activate_final:
                if self.layer_norm and self.rlpd_style:
                    x = nn.LayerNorm()(x)
                x = activation(x)
                if self.layer_norm and not self.rlpd_style:
                    x = nn.LayerNorm()(x)
        return x


class ResnetStack(nn.Module):
    """One IMPALA stage: a 3x3 convolution to `features` channels, a 3x3 max-pool of stride 2, then
    `num_blocks` residual blocks of (ReLU, conv, ReLU, conv) + skip; Xavier-uniform kernels (FQL's
    ResnetStack)."""

    features: int
    num_blocks: int

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.xavier_uniform()
        conv = functools.partial(nn.Conv, self.features, (3, 3), strides=1, padding="SAME", kernel_init=init)
        x = nn.max_pool(conv()(x), window_shape=(3, 3), strides=(2, 2), padding="SAME")
        for _ in range(self.num_blocks):
            x = x + conv()(nn.relu(conv()(nn.relu(x))))
        return x


class ImpalaEncoder(nn.Module):
    """The IMPALA ResNet of FQL's utils/encoders.py: pixels scaled to [0, 1], one ResnetStack per entry of
    `stack_sizes`, ReLU, flattened, then a Dense layer of `mlp_dim` units with GELU (FQL's MLP with
    activate_final; no layer norm, no dropout, FQL's defaults). Works on any leading shape:
    (..., height, width, channels) uint8 -> (..., mlp_dim)."""

    stack_sizes: tuple[int, ...] = (16, 32, 32)
    num_blocks: int = 2
    mlp_dim: int = 512

    @nn.compact
    def __call__(self, x):
        leading = x.shape[:-3]
        x = x.astype(jnp.float32) / 255.0
        for features in self.stack_sizes:
            x = ResnetStack(features, self.num_blocks)(x)
        x = nn.relu(x).reshape((*leading, -1))
        return MLP((self.mlp_dim,), activate_final=True)(x)


# encoder name (agent.encoder) -> module; impala_small is FQL's name for IMPALA with one block per stack
ENCODERS = {"impala_small": functools.partial(ImpalaEncoder, stack_sizes=(16, 32, 32), num_blocks=1)}


def encoder_module(encoder: str, **kwargs) -> nn.Module:
    """The encoder that agent.encoder names; an unknown name lists the valid ones."""
    if encoder not in ENCODERS:
        raise ValueError(f"unknown agent.encoder {encoder!r}; valid: null or one of {sorted(ENCODERS)}")
    return ENCODERS[encoder](**kwargs)


def features(encoder: str | None, observations, encoded: bool = False):
    """What a network's MLP sees: the observations themselves without an encoder (or when they are
    `encoded` already, by `encode`), else the named encoder's output. Call inside a network's compact
    __call__: the encoder's parameters become that network's `encoder` submodule."""
    if encoder is None or encoded:
        return observations
    return encoder_module(encoder, name="encoder")(observations)


def encode(net: nn.Module, params: dict, observations):
    """net's features of observations (..., *obs) -> (..., features), with net's own encoder parameters:
    the input of `apply_encoded`. Without an encoder the observations themselves."""
    if net.encoder is None:
        return observations
    return encoder_module(net.encoder).apply({"params": params["params"]["encoder"]}, observations)


def apply_encoded(net: nn.Module, params: dict, encoded, *inputs):
    """net applied to features from `encode(net, params, ...)`: equal to net.apply(params, observations,
    *inputs), without running the encoder again."""
    return net.apply(params, encoded, *inputs, encoded=True)


def example_observations(obs_shape: int | Sequence[int]):
    """One zero observation (1, *shape) to initialise networks with: obs_shape is an int for state vectors
    (float32) or an image shape (height, width, channels) for pixels (uint8, as the engine hands them)."""
    if isinstance(obs_shape, int):
        return jnp.zeros((1, obs_shape))
    return jnp.zeros((1, *obs_shape), jnp.uint8)


class Critic(nn.Module):
    """Ensemble of `num_qs` Q-networks on (observation, flattened action chunk).

    Returns (num_qs, batch) values; the members share no parameters and run as one batched computation.
    """

    hidden_dims: Sequence[int]
    num_qs: int = 2
    layer_norm: bool = True
    rlpd_style: bool = False  # MLP.rlpd_style
    encoder: str | None = None  # one encoder for the whole ensemble, as FQL's Value

    @nn.compact
    def __call__(self, observations, actions, encoded: bool = False):
        observations = features(self.encoder, observations, encoded)
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
    encoder: str | None = None

    @nn.compact
    def __call__(self, observations, encoded: bool = False):
        observations = features(self.encoder, observations, encoded)
        return MLP((*self.hidden_dims, 1), layer_norm=self.layer_norm)(observations).squeeze(-1)


class Actor(nn.Module):
    """The mean (or pre-tanh mode) of a Gaussian policy with a fixed std: hidden layers, then a Dense head
    initialised `final_init_scale` times smaller, so the first policy sits near 0 (FQL's Actor)."""

    hidden_dims: Sequence[int]
    output_dim: int
    layer_norm: bool = False
    final_init_scale: float = 0.01
    encoder: str | None = None

    @nn.compact
    def __call__(self, observations, encoded: bool = False):
        observations = features(self.encoder, observations, encoded)
        hidden = MLP(self.hidden_dims, activate_final=True, layer_norm=self.layer_norm)(observations)
        head_init = nn.initializers.variance_scaling(self.final_init_scale, "fan_avg", "uniform")
        return nn.Dense(self.output_dim, kernel_init=head_init)(hidden)


class VectorField(nn.Module):
    """v(s, x, u) for flow matching, or mu(s, z) for a one-step policy when called without `times`."""

    hidden_dims: Sequence[int]
    output_dim: int
    layer_norm: bool = False
    encoder: str | None = None

    @nn.compact
    def __call__(self, observations, x, times=None, encoded: bool = False):
        observations = features(self.encoder, observations, encoded)
        inputs = [observations, x] if times is None else [observations, x, times]
        return MLP((*self.hidden_dims, self.output_dim), layer_norm=self.layer_norm)(
            jnp.concatenate(inputs, axis=-1)
        )


class FourierFeatures(nn.Module):
    """A learnable Fourier embedding of the diffusion step: [cos(2 pi t W^T), sin(2 pi t W^T)] with W
    (output_size / 2, 1) drawn from N(0, 0.2^2) (QAM's utils/diffusion.py, after IDQL). times: (..., 1)."""

    output_size: int

    @nn.compact
    def __call__(self, times):
        kernel = self.param("kernel", nn.initializers.normal(0.2), (self.output_size // 2, times.shape[-1]))
        f = 2 * jnp.pi * times @ kernel.T
        return jnp.concatenate([jnp.cos(f), jnp.sin(f)], axis=-1)


class DDPMNoise(nn.Module):
    """eps(s, x_t, t), the noise predictor of QAM's DDPM policies (ColinQiyangLi/qam utils/diffusion.py DDPM,
    built by agents/dcgql.py): the step's FourierFeatures through a mish MLP of `hidden_dims` (last layer
    linear) give a condition, and a mish MLP of `hidden_dims` reads [x_t, s, condition]. times: (..., 1) the
    step t = 1..T itself, not normalised."""

    hidden_dims: Sequence[int]
    output_dim: int
    time_dim: int = 64
    layer_norm: bool = False
    encoder: str | None = None

    @nn.compact
    def __call__(self, observations, x, times, encoded: bool = False):
        observations = features(self.encoder, observations, encoded)
        condition = MLP(self.hidden_dims, activation=jax.nn.mish)(FourierFeatures(self.time_dim)(times))
        net = MLP((*self.hidden_dims, self.output_dim), layer_norm=self.layer_norm, activation=jax.nn.mish)
        return net(jnp.concatenate([x, observations, condition], axis=-1))
