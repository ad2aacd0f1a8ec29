"""Expressive behaviour models over flat action chunks: flow matching or DDPM-style diffusion.

Best-of-N (agents/qc.py) only needs a model that can represent every mode of the data's chunks and
draw many samples in one batched call; a Gaussian would average the modes into actions nobody took.
Both models share one interface, so the agent never branches on which one it holds:
  init(key, observations, x) -> params
  draw_noise(key, batch_size) -> dict                 # the randomness of one loss evaluation
  loss(params, observations, actions, noise, weights) -> scalar
  sampling_noise(key, shape) -> pytree                # the randomness of samples with leading `shape`
  encode(params, observations) -> features            # once per observation (networks.encode)
  sample(params, features, noise) -> (..., policy_dim), clipped to [-1, 1]
Sampling works on any leading shape, e.g. (batch, num_samples, features): best-of-N encodes each observation
once and repeats its features, and every denoising step reuses them.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from agents import ddpm
from agents.flow import euler_sample, flow_matching_loss, network_velocity
from agents.networks import VectorField, apply_encoded, encode

BEHAVIORS = ("flow", "diffusion")
DIFFUSION_SCHEDULES = ("cosine", "linear")
DIFFUSION_SAMPLERS = ("ddpm", "ddim")


def normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """jax.random.normal drawn flat and reshaped: XLA:CPU compiles rank-3 and rank-4 draws several times
    slower (seconds each), and best-of-N draws (batch, num_samples, policy_dim) noise in every update."""
    return jax.random.normal(key, (math.prod(shape),)).reshape(shape)


def _weighted_mean(error: jax.Array, weights: jax.Array | None) -> jax.Array:
    """error: (batch, steps, action_dim); weights: (batch, steps) (the chunk's `valid`) or None."""
    if weights is None:
        return error.mean()
    return (error * weights[..., None]).mean()


@dataclasses.dataclass(frozen=True)
class Flow:
    """Flow matching (spec, "Behaviour flow"), sampled with `steps` Euler steps from x0 ~ N(0, I)."""

    net: VectorField
    steps: int

    def init(self, key: jax.Array, observations: jax.Array, x: jax.Array) -> dict:
        return self.net.init(key, observations, x, jnp.zeros((*x.shape[:-1], 1)))

    def draw_noise(self, key: jax.Array, batch_size: int) -> dict:
        x0_key, times_key = jax.random.split(key)
        return {
            "x0": normal(x0_key, (batch_size, self.net.output_dim)),
            "times": jax.random.uniform(times_key, (batch_size, 1)),
        }

    def loss(
        self,
        params: dict,
        observations: jax.Array,
        actions: jax.Array,
        noise: dict,
        weights: jax.Array | None,
    ) -> jax.Array:
        """actions: (batch, steps, action_dim); weights: (batch, steps) or None."""

        def velocity(obs, x, u):
            return self.net.apply(params, obs, x, u)

        return flow_matching_loss(velocity, observations, actions, noise["x0"], noise["times"], weights)

    def sampling_noise(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return normal(key, (*shape, self.net.output_dim))

    def encode(self, params: dict, observations: jax.Array) -> jax.Array:
        return encode(self.net, params, observations)

    def sample(self, params: dict, encoded: jax.Array, noise: jax.Array) -> jax.Array:
        """encoded: (..., features) from `encode`; noise: (..., policy_dim) -> (..., policy_dim)."""

        return euler_sample(network_velocity(self.net, params), encoded, noise, self.steps)


@dataclasses.dataclass(frozen=True)
class Diffusion:
    """Denoising diffusion (Ho et al. 2020) over the flat chunk; the VectorField predicts the noise, its time
    input the normalised step t / T. The schedule, forward process, posterior and sampler: agents/ddpm.py.

    Training regresses eps from x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, t = 1..T (drawn as
    t - 1). Sampling runs t = T..1 with the predicted x0 clipped to [-1, 1] at every step, by the stochastic
    DDPM posterior with sigma^2 = beta~ ('ddpm') or the deterministic DDIM update ('ddim', eta = 0), and clips
    the result.
    """

    net: VectorField
    steps: int
    schedule: str
    sampler: str

    def betas(self) -> np.ndarray:
        """beta_1..beta_T of the schedule, (steps,) (agents/ddpm.py)."""
        return ddpm.beta_schedule(self.schedule, self.steps)

    def init(self, key: jax.Array, observations: jax.Array, x: jax.Array) -> dict:
        return self.net.init(key, observations, x, jnp.zeros((*x.shape[:-1], 1)))

    def draw_noise(self, key: jax.Array, batch_size: int) -> dict:
        eps_key, step_key = jax.random.split(key)
        return {
            "eps": normal(eps_key, (batch_size, self.net.output_dim)),
            "steps": jax.random.randint(step_key, (batch_size,), 0, self.steps),
        }

    def loss(
        self,
        params: dict,
        observations: jax.Array,
        actions: jax.Array,
        noise: dict,
        weights: jax.Array | None,
    ) -> jax.Array:
        """||eps(s, x_t, t/T) - eps||^2; the time input is the normalised step.

        actions: (batch, steps, action_dim); weights: (batch, steps) or None.
        """
        batch = actions.shape[0]
        x0 = actions.reshape(batch, -1)
        # noise["steps"] = t - 1: step t's level is alpha_bars[t]
        alpha_bar = jnp.asarray(ddpm.alpha_bars(self.betas()), jnp.float32)[noise["steps"] + 1][:, None]
        x_t = ddpm.forward(x0, noise["eps"], alpha_bar)
        times = ((noise["steps"] + 1) / self.steps)[:, None].astype(jnp.float32)
        predicted = self.net.apply(params, observations, x_t, times)
        return _weighted_mean(jnp.square(predicted - noise["eps"]).reshape(actions.shape), weights)

    def sampling_noise(self, key: jax.Array, shape: tuple[int, ...]) -> dict:
        """x_T, and for DDPM the fresh noise of each step t = 1..T at t - 1: (steps, *shape, policy_dim)."""
        initial_key, steps_key = jax.random.split(key)
        noise = {"initial": normal(initial_key, (*shape, self.net.output_dim))}
        if self.sampler == "ddpm":
            noise["steps"] = normal(steps_key, (self.steps, *shape, self.net.output_dim))
        return noise

    def encode(self, params: dict, observations: jax.Array) -> jax.Array:
        return encode(self.net, params, observations)

    def sample(self, params: dict, encoded: jax.Array, noise: dict) -> jax.Array:
        """encoded: (..., features) from `encode`; noise from `sampling_noise` with the same leading shape."""

        def eps(x, t):
            return apply_encoded(self.net, params, encoded, x, jnp.full((*x.shape[:-1], 1), t / self.steps))

        rule = "ddim" if self.sampler == "ddim" else "posterior"
        x = ddpm.sample(eps, noise["initial"], noise.get("steps"), self.betas(), rule=rule)
        return jnp.clip(x, -1.0, 1.0)


def make(config, policy_dim: int) -> Flow | Diffusion:
    """The behaviour model named by `config.behavior` (an agents.qc.Config): a VectorField of
    `config.hidden_dims` over flat (policy_dim,) chunks, with `config.actor_layer_norm`."""
    net = VectorField(config.hidden_dims, policy_dim, config.actor_layer_norm, config.encoder)
    if config.behavior == "flow":
        return Flow(net, config.flow_steps)
    if config.behavior == "diffusion":
        return Diffusion(net, config.diffusion_steps, config.diffusion_schedule, config.diffusion_sampler)
    raise ValueError(f"behavior must be one of {BEHAVIORS}, got {config.behavior!r}")
