"""SUPE-GT: skills pre-trained offline, then an RLPD agent online that picks a skill every chunk_length steps
(Wilcoxson, Li, Frans & Levine 2024, without the reward model and RND bonus: offline rewards are given).

    offline (update):  a trajectory VAE on segments of chunk_length (s, a) pairs, OPAL's:
        q(z | segment)     a bidirectional-GRU encoder, a diagonal Gaussian
        p(z | s_t)         a state-conditioned prior
        pi(a | s_{t+k}, z) the closed-loop skill decoder, one action from the current state
        loss = -mean_k log pi(a_{t+k} | s_{t+k}, z ~ q) + kl_weight * KL(q || p)
    online (online_update): RLPD (SAC, num_qs critics, 50/50 offline/online batches) whose action is
        tanh(z), trained on chunks relabelled as high-level transitions (relabel): the z the policy chose,
        recorded beside the actions, for an online chunk that starts a skill; the frozen encoder's mean
        latent of the chunk for every other chunk (offline data, online windows inside a skill); the
        chunk's discounted reward, its mask and s_{t+h}, bootstrapped with gamma once per high-level step
        (the authors' SAC; `bootstrap="steps"`: gamma^h).
    acting (act_step, every env step): a new z every chunk_length steps, from the prior until the first
        online update (start_training), then from the RLPD policy (its mode in evaluation); the frozen
        decoder's action sample for (the current state, z) at every step. The carry holds z, the steps of
        the skill still to come and the skill's key.

Choices and deviations (docs/agents.md, SUPE-GT):
  - Relabelling uses the encoder's mean, as the authors' ChunkDataset(label_skills=True) does.
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
# how the high-level critic bootstraps from s_{t+h}: "skill" gamma, "steps" gamma^chunk_length
BOOTSTRAPS = ("skill", "steps")


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
    """Encoder, prior and closed-loop decoder of the skill VAE; `method=` picks the part."""

    hidden_dims: tuple[int, ...]
    encoder_size: int
    skill_dim: int
    chunk_length: int
    action_dim: int

    def setup(self):
        self.encoder = SegmentEncoder(self.encoder_size, self.skill_dim)
        self.prior_net = GaussianHead(self.hidden_dims, self.skill_dim)
        self.decoder = GaussianHead(self.hidden_dims, self.action_dim)

    def encode(self, states, actions):
        return self.encoder(states, actions)

    def prior(self, observations):
        return self.prior_net(observations)

    def decode(self, observations, latents):
        """Means and log-stds of one action from (the current state, z), each (..., action_dim); leading
        axes are shared by `observations` (..., obs_dim) and `latents` (..., skill_dim)."""
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
    # "skill": gamma once per high-level step, as the authors' SAC bootstraps; "steps": gamma^chunk_length
    bootstrap: str = "skill"
    PRESETS = {"debug": {"hidden_dims": (64, 64), "vae_hidden_dims": (64, 64), "encoder_size": 32}}

    def __post_init__(self):
        if self.bootstrap not in BOOTSTRAPS:
            raise ValueError(f"agent.bootstrap={self.bootstrap!r}: expected one of {sorted(BOOTSTRAPS)}")

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


def relabel(batch: dict, latents: jax.Array, bootstrap: str = "skill") -> dict:
    """A chunk batch as a batch of high-level transitions for the RLPD losses.

    The action becomes tanh(latents) (batch, 1, skill_dim); the reward the authors' sum, which drops
    rewards after a zero mask: sum_k gamma^k r_{t+k} m_{t..t+k-1}. The RLPD losses read the last column of
    rewards, masks, valid and next_observations and bootstrap with gamma^columns: `bootstrap="skill"` keeps
    only that column (one high-level step: gamma), "steps" keeps all chunk_length (gamma^chunk_length).
    """
    rewards = jnp.asarray(batch["rewards"])
    steps = jnp.concatenate([rewards[:, :1], jnp.diff(rewards, axis=1)], axis=1)  # gamma^k r_{t+k}
    alive = jnp.concatenate([jnp.ones_like(batch["masks"][:, :1]), batch["masks"][:, :-1]], axis=1)
    high = {**batch, "rewards": rewards.at[:, -1].set((steps * alive).sum(-1))}
    if bootstrap == "skill":
        high = {key: high[key][:, -1:] for key in ("rewards", "masks", "valid", "next_observations")}
        high = {**batch, **high}
    return {**high, "actions": to_tanh(latents)[:, None]}


def chosen_latents(batch: dict, encoded: jax.Array) -> jax.Array:
    """Each chunk's latent: the one the policy chose, recorded beside the actions, for an online chunk
    that starts a skill (`recorded` and `skill_start` at its first step); the encoder's (`encoded`) for
    the others, whose actions no single choice explains. (batch, skill_dim)"""
    if "recorded" not in batch:
        return encoded
    stored = (batch["recorded"] * batch["skill_start"][:, 0]) > 0.5
    return jnp.where(stored[:, None], batch["latents"][:, 0], encoded)


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
        -mean_k log pi(a_{t+k} | s_{t+k}, z) + kl_weight * KL(q(z | segment) || p(z | s_t)), z ~ q."""
        states, actions = segment_states(batch), batch["actions"]
        weights = segment_weights(batch)
        post_means, post_log_stds = self.vae.apply(params, states, actions, method="encode")
        prior_means, prior_log_stds = self.vae.apply(params, batch["observations"], method="prior")
        latents = post_means + jnp.exp(post_log_stds) * noise
        each_step = jnp.broadcast_to(latents[:, None], (*states.shape[:2], latents.shape[-1]))
        means, log_stds = self.vae.apply(params, states, each_step, method="decode")
        per_step = gaussian_log_prob(actions, means, log_stds)
        reconstruction = weighted_mean(-per_step.mean(-1), weights)
        kl = weighted_mean(gaussian_kl(post_means, post_log_stds, prior_means, prior_log_stds), weights)
        loss = reconstruction + self.config.kl_weight * kl
        mse = weighted_mean(jnp.square(means - actions).mean((1, 2)), weights)
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
        high_batch = relabel(batch, chosen_latents(batch, self.encode(batch)), self.config.bootstrap)
        high, info = self.high.update(high_batch)
        return self.replace(high=high, online_updates=self.online_updates + 1), info

    # ---- acting: closed loop, one action per env step ----------------------------------------------------

    def transition_fields(self) -> dict[str, tuple[int, ...]]:
        """What the online phase records beside each action: the skill's latent z and 1 at a skill's first
        step (0 where the agent did not choose the action: random actions)."""
        return {"latents": (self.config.skill_dim,), "skill_start": ()}

    def initial_carry(self) -> dict:
        """No skill under way: the next act picks one."""
        return {
            "steps_left": jnp.zeros((), jnp.int32),
            "latents": jnp.zeros((self.config.skill_dim,), jnp.float32),
            "key": jnp.zeros((2,), jnp.uint32),
        }

    def choose_latents(self, observations: jax.Array, key: jax.Array, evaluation: bool) -> jax.Array:
        """A skill's z for observations (batch, obs_dim): from the prior before the first online update,
        else from the RLPD policy; in evaluation the mode of either (the authors' `eval_actions`)."""
        prior_key, policy_key = jax.random.split(key)
        prior_means, prior_log_stds = self.vae.apply(self.params, observations, method="prior")
        if not evaluation:
            prior_means = prior_means + jnp.exp(prior_log_stds) * jax.random.normal(
                prior_key, prior_means.shape
            )
        policy = self.high.sample_actions(observations, policy_key, deterministic=evaluation)[:, 0]
        return from_tanh(jnp.where(self.online_updates > 0, policy, to_tanh(prior_means)))

    def act_step(self, observations: jax.Array, carry: dict, key: jax.Array, evaluation: bool) -> tuple:
        """One action (1, action_dim) for observations (1, obs_dim): a new skill when none is under way
        (`key` is fresh there), else the current one's; the decoder's sample for (s_{t+k}, z), clipped as
        the authors do, its noise from the skill's key and k. Returns the action, the carry after it and
        the fields recorded beside it."""
        starts = carry["steps_left"] == 0
        skill_key, choice_key = jax.random.split(key)
        latents = jnp.where(
            starts, self.choose_latents(observations, choice_key, evaluation)[0], carry["latents"]
        )
        skill_key = jnp.where(starts, skill_key, carry["key"])
        steps_left = jnp.where(starts, self.config.chunk_length, carry["steps_left"])
        means, log_stds = self.vae.apply(self.params, observations, latents[None], method="decode")
        noise = jax.random.normal(jax.random.fold_in(skill_key, steps_left), means.shape)
        actions = jnp.clip(means + jnp.exp(log_stds) * noise, -1.0, 1.0)
        carry = {"steps_left": steps_left - 1, "latents": latents, "key": skill_key}
        fields = {"latents": latents[None], "skill_start": starts.astype(jnp.float32)[None]}
        return actions, carry, fields
