"""SUPE-GT: skills pre-trained offline, then an RLPD agent online that picks a skill every chunk_length steps
(Wilcoxson, Li, Frans & Levine 2024, without the reward model and RND bonus: offline rewards are given).

    offline (update):  a trajectory VAE on segments of chunk_length (s, a) pairs, OPAL's:
        q(z | segment)   a bidirectional-GRU encoder, a diagonal Gaussian
        p(z | s_t)       a state-conditioned prior
        pi(a | s_t, z)   the skill decoder
        loss = -log pi(segment's actions | s_t, z ~ q) + kl_weight * KL(q || p)
    online (online_update): RLPD (SAC, num_qs critics, 50/50 offline/online batches) whose action is
        tanh(z), trained on relabelled chunks (relabel): the frozen encoder's mean latent of the chunk, the
        chunk's discounted reward, its mask and s_{t+h}, bootstrapped with gamma^h.
    acting: z from the prior until the first online update (start_training), then from the RLPD policy;
        the frozen decoder turns z into the chunk's chunk_length actions.

Choices and deviations (docs/agents.md, SUPE-GT):
  - The authors' decoder is closed loop, pi(a_k | s_{t+k}, z); the engine executes a chunk open loop, so
    here the decoder maps (s_t, z) to the whole chunk (a Gaussian over chunk_length * action_dim).
  - Relabelling uses the encoder's mean, as the authors' ChunkDataset(label_skills=True) does. The authors
    store the z the policy chose for online transitions; the engine's replay holds environment actions, so
    online chunks are relabelled with the encoder too (the authors' `interpolate` relabelling, for all of
    them).
  - Segments that cross an episode end are left out of the VAE loss and the critic loss (valid[h-1] = 0),
    as the authors' ChunkDataset keeps only start indices whose segment stays in one trajectory.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from agents import rlpd, step
from agents.config import AgentConfig, sweepable
from agents.networks import MLP, default_init

# The authors' TanhConverter keeps latents inside (-1, 1) by this margin before arctanh.
TANH_EPSILON = 1e-5
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # the authors' GaussianModule clips
HEAD_INIT = nn.initializers.variance_scaling(1e-2, "fan_avg", "uniform")  # GaussianModule's final_fc scale


def to_tanh(latents: jax.Array) -> jax.Array:
    """A latent as the RLPD policy's action: tanh(z) kept TANH_EPSILON inside +-1."""
    return jnp.clip(jnp.tanh(latents), -1.0 + TANH_EPSILON, 1.0 - TANH_EPSILON)


def from_tanh(actions: jax.Array) -> jax.Array:
    """The latent of a policy action: arctanh of the action kept TANH_EPSILON inside +-1."""
    return jnp.arctanh(jnp.clip(actions, -1.0 + TANH_EPSILON, 1.0 - TANH_EPSILON))


def gaussian_log_prob(x: jax.Array, means: jax.Array, log_stds: jax.Array) -> jax.Array:
    """Log density of a diagonal Gaussian, summed over the last axis: (...)."""
    standardised = (x - means) * jnp.exp(-log_stds)
    return (-0.5 * jnp.square(standardised) - log_stds - 0.5 * math.log(2 * math.pi)).sum(-1)


def gaussian_kl(means_q, log_stds_q, means_p, log_stds_p) -> jax.Array:
    """KL(q || p) of two diagonal Gaussians, summed over the last axis: (...)."""
    variance_ratio = jnp.exp(2.0 * (log_stds_q - log_stds_p))
    mean_term = jnp.square(means_q - means_p) * jnp.exp(-2.0 * log_stds_p)
    return 0.5 * (variance_ratio + mean_term - 1.0).sum(-1) + (log_stds_p - log_stds_q).sum(-1)


def segment_states(batch: dict) -> jax.Array:
    """s_t .. s_{t+h-1} of each chunk: (batch, chunk_length, obs_dim)."""
    return jnp.concatenate([batch["observations"][:, None], batch["next_observations"][:, :-1]], axis=1)


def segment_weights(batch: dict) -> jax.Array:
    """1 for a segment inside one episode, 0 for one that crosses an episode end: (batch,)."""
    return batch["valid"][:, -1]


def weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    return (values * weights).sum() / jnp.maximum(weights.sum(), 1.0)


class GaussianHead(nn.Module):
    """The authors' GaussianModule: a ReLU MLP, then Dense heads (initialised 1e-2 times smaller) for the
    means and the clipped log-stds, each (batch, output_dim)."""

    hidden_dims: tuple[int, ...]
    output_dim: int

    @nn.compact
    def __call__(self, inputs):
        x = MLP(self.hidden_dims, activate_final=True, rlpd_style=True)(inputs)
        means = nn.Dense(self.output_dim, kernel_init=HEAD_INIT, name="mean")(x)
        log_stds = nn.Dense(self.output_dim, kernel_init=HEAD_INIT, name="log_std")(x)
        return means, jnp.clip(log_stds, LOG_STD_MIN, LOG_STD_MAX)


class SegmentEncoder(nn.Module):
    """The authors' SeqEncoder: each state through a ReLU MLP, joined with its action, two bidirectional
    GRU layers, all steps' outputs concatenated and projected to the posterior's means and log-stds.

    The projection's second half is a log-variance in the authors' code (std = exp(0.5 * x)), kept here.
    """

    hidden_size: int
    skill_dim: int

    @nn.compact
    def __call__(self, states, actions):
        """states: (batch, chunk_length, obs_dim), actions: (batch, chunk_length, action_dim)."""
        x = MLP((self.hidden_size, self.hidden_size), activate_final=True, rlpd_style=True)(states)
        x = jnp.concatenate([x, actions], axis=-1)
        for _ in range(2):
            forward, backward = (nn.RNN(nn.GRUCell(self.hidden_size)) for _ in range(2))
            x = nn.Bidirectional(forward, backward)(x)
        outputs = nn.Dense(2 * self.skill_dim, kernel_init=default_init)(x.reshape(x.shape[0], -1))
        means, log_variances = jnp.split(outputs, 2, axis=-1)
        return means, 0.5 * log_variances


class VAE(nn.Module):
    """Encoder, prior and (open-loop) decoder of the skill VAE; `method=` picks the part."""

    hidden_dims: tuple[int, ...]
    encoder_size: int
    skill_dim: int
    chunk_length: int
    action_dim: int

    def setup(self):
        self.encoder = SegmentEncoder(self.encoder_size, self.skill_dim)
        self.prior_net = GaussianHead(self.hidden_dims, self.skill_dim)
        self.decoder = GaussianHead(self.hidden_dims, self.chunk_length * self.action_dim)

    def encode(self, states, actions):
        return self.encoder(states, actions)

    def prior(self, observations):
        return self.prior_net(observations)

    def decode(self, observations, latents):
        """Means and log-stds of the actions from (s_t, z), each (batch, chunk_length * action_dim)."""
        return self.decoder(jnp.concatenate([observations, latents], axis=-1))

    def __call__(self, states, actions):  # initialises every part
        means, _ = self.encode(states, actions)
        return self.prior(states[:, 0]), self.decode(states[:, 0], means)


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """Defaults and their sources: docs/defaults.md (SUPE-GT). The authors' skill horizon (4), latent size
    (8) and VAE sizes; the QC paper's KL weight (0.003) and RLPD family (K = 10 critics, 4 x 512)."""

    chunk_length: int = 4  # the skill horizon: one latent every chunk_length steps
    skill_dim: int = 8
    kl_weight: float = sweepable(0.003)
    vae_hidden_dims: tuple[int, ...] = (256, 256)  # prior and decoder
    encoder_size: int = 256  # the encoder's state MLP and GRU width
    lr: float = sweepable(3e-4)  # the VAE's and the RLPD agent's Adam
    tau: float = sweepable(0.005)
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # the RLPD agent's actor and critics
    num_qs: int = 10
    init_temperature: float = 1.0
    target_entropy_multiplier: float = 0.5  # target entropy = -0.5 * skill_dim
    PRESETS = {"debug": {"hidden_dims": (64, 64), "vae_hidden_dims": (64, 64), "encoder_size": 32}}

    def high_level(self) -> rlpd.Config:
        """The RLPD agent's config: one latent per query, this config's sweepable values."""
        return rlpd.Config(
            chunk_length=1,
            lr=self.lr,
            tau=self.tau,
            discount=self.discount,
            hidden_dims=self.hidden_dims,
            num_qs=self.num_qs,
            init_temperature=self.init_temperature,
            target_entropy_multiplier=self.target_entropy_multiplier,
        )


def relabel(batch: dict, latents: jax.Array) -> dict:
    """A chunk batch as a batch of high-level transitions for the RLPD losses.

    The action becomes tanh(latents) (batch, 1, skill_dim). The RLPD losses read the chunk's last column of
    rewards, masks, valid and next_observations and bootstrap with gamma^chunk_length; the last reward is
    replaced by the authors' sum, which drops rewards after a zero mask: sum_k gamma^k r_{t+k} m_{t..t+k-1}.
    """
    rewards = jnp.asarray(batch["rewards"])
    steps = jnp.concatenate([rewards[:, :1], jnp.diff(rewards, axis=1)], axis=1)  # gamma^k r_{t+k}
    alive = jnp.concatenate([jnp.ones_like(batch["masks"][:, :1]), batch["masks"][:, :-1]], axis=1)
    return {
        **batch,
        "actions": to_tanh(latents)[:, None],
        "rewards": rewards.at[:, -1].set((steps * alive).sum(-1)),
    }


class Agent(flax.struct.PyTreeNode):
    """params: the VAE's (trained offline, frozen online); high: the RLPD agent over latents."""

    batch_kind: ClassVar[str] = "chunks"
    reads_every_next_observation: ClassVar[bool] = True  # the VAE encodes every state of a segment

    rng: jax.Array
    params: dict
    opt_state: Any
    high: rlpd.Agent
    online_updates: jax.Array  # updates of `high` so far; 0 means act with the prior
    config: Config
    action_dim: int = flax.struct.field(pytree_node=False)
    vae: VAE = flax.struct.field(pytree_node=False)
    optimizer: optax.GradientTransformation = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int | tuple[int, ...], action_dim: int, config: Config) -> Agent:
        config.require_state_vectors("SUPE-GT's skill VAE", obs_dim)
        sizes = (config.vae_hidden_dims, config.encoder_size, config.skill_dim, config.chunk_length)
        vae = VAE(*sizes, action_dim)
        optimizer = step.adam(config.lr)
        rng, vae_key, high_key = jax.random.split(jax.random.PRNGKey(seed), 3)
        shape = (1, config.chunk_length)
        params = jax.jit(vae.init)(vae_key, jnp.zeros((*shape, obs_dim)), jnp.zeros((*shape, action_dim)))
        high_seed = int(jax.random.randint(high_key, (), 0, 2**31 - 1))
        high = rlpd.Agent.create(high_seed, obs_dim, config.skill_dim, config.high_level())
        return cls(
            rng=rng,
            params=params,
            opt_state=optimizer.init(params),
            high=high,
            online_updates=jnp.zeros((), jnp.int32),
            config=config,
            action_dim=action_dim,
            vae=vae,
            optimizer=optimizer,
        )

    # ---- offline: the skill VAE --------------------------------------------------------------------------

    def draw_noise(self, key: jax.Array, batch_size: int) -> jax.Array:
        """The reparameterisation noise of z ~ q(z | segment): (batch, skill_dim)."""
        return jax.random.normal(key, (batch_size, self.config.skill_dim))

    def total_loss(self, params: dict, batch: dict, noise: jax.Array) -> tuple[jax.Array, dict]:
        """The negative ELBO per segment, averaged over the segments inside one episode:
        -mean_k log pi(a_{t+k} | s_t, z) + kl_weight * KL(q(z | segment) || p(z | s_t)), z ~ q."""
        states, actions = segment_states(batch), batch["actions"]
        weights = segment_weights(batch)
        post_means, post_log_stds = self.vae.apply(params, states, actions, method="encode")
        prior_means, prior_log_stds = self.vae.apply(params, batch["observations"], method="prior")
        latents = post_means + jnp.exp(post_log_stds) * noise
        means, log_stds = self.vae.apply(params, batch["observations"], latents, method="decode")
        shape = actions.shape
        per_step = gaussian_log_prob(actions, means.reshape(shape), log_stds.reshape(shape))
        reconstruction = weighted_mean(-per_step.mean(-1), weights)
        kl = weighted_mean(gaussian_kl(post_means, post_log_stds, prior_means, prior_log_stds), weights)
        loss = reconstruction + self.config.kl_weight * kl
        mse = weighted_mean(jnp.square(means.reshape(shape) - actions).mean((1, 2)), weights)
        return step.sum_losses(
            vae=(
                loss,
                {
                    "loss": loss,
                    "reconstruction": reconstruction,
                    "kl": kl,
                    "action_mse": mse,
                    "posterior_std": jnp.exp(post_log_stds).mean(),
                    "prior_std": jnp.exp(prior_log_stds).mean(),
                },
            )
        )

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One Adam step of the skill VAE on a batch of segments (the offline phase)."""
        agent, _, info = step.optimizer_step(self, batch, batch["observations"].shape[0])
        return agent, info

    # ---- online: RLPD over latents -----------------------------------------------------------------------

    def encode(self, batch: dict) -> jax.Array:
        """The frozen encoder's mean latent of each chunk: (batch, skill_dim)."""
        means, _ = self.vae.apply(self.params, segment_states(batch), batch["actions"], method="encode")
        return means

    def online_update(self, batch: dict) -> tuple[Agent, dict]:
        """One RLPD update on the chunks relabelled as high-level transitions; the VAE stays frozen."""
        high_batch = relabel(batch, self.encode(batch))
        high, info = self.high.update(high_batch)
        return self.replace(high=high, online_updates=self.online_updates + 1), info

    def sample_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """The decoded skill, (batch, chunk_length, action_dim) in [-1, 1]: z from the prior before the first
        online update, else from the RLPD policy; the decoder's action sample, clipped as the authors do."""
        prior_key, policy_key, decoder_key = jax.random.split(key, 3)
        prior_means, prior_log_stds = self.vae.apply(self.params, observations, method="prior")
        prior = prior_means + jnp.exp(prior_log_stds) * jax.random.normal(prior_key, prior_means.shape)
        policy = self.high.sample_actions(observations, policy_key)[:, 0]
        latents = from_tanh(jnp.where(self.online_updates > 0, policy, to_tanh(prior)))
        means, log_stds = self.vae.apply(self.params, observations, latents, method="decode")
        actions = means + jnp.exp(log_stds) * jax.random.normal(decoder_key, means.shape)
        return jnp.clip(actions, -1.0, 1.0).reshape(observations.shape[0], self.config.chunk_length, -1)
