"""RLPD family: SAC on online data mixed 50/50 with offline data (Ball et al. 2023; Li, Zhou & Levine 2025).

A tanh-squashed diagonal Gaussian policy over the whole flat chunk, a critic ensemble trained with the
chunk-level n-step target (mean over the K target critics) and a temperature tuned towards a target entropy.
The networks are the reference's: ReLU, the critic's LayerNorm before each activation, separate mean and
log-std heads.
chunk_length = 1 is RLPD; chunk_length = 5 is RLPD-AC; adding `bc_alpha` * (-log pi(dataset chunk | s)) is
QC-RLPD. The 50/50 batches come from the replay (top-level `offline_ratio`), not from the agent.
"""

from __future__ import annotations

import dataclasses
import math

import flax.struct
import jax
import jax.numpy as jnp

from agents import critic as td
from agents import step
from agents import tanh_gaussian as tg
from agents.config import AgentConfig, sweepable
from agents.networks import Critic, encode, example_observations

# Dataset actions sit on the +-1 boundary, where atanh is infinite.
ATANH_CLIP = 1e-5


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """Paper defaults of RLPD (spec, "RLPD family"); RLPD-AC sets chunk_length 5, QC-RLPD also bc_alpha 0.01.

    target_subsample: None bootstraps from the mean of all target critics; n takes the min over a random
    subset of n of them (original RLPD: 2). backup_entropy subtracts the entropy bonus of the soft value
    in the target.
    """

    chunk_length: int = 1
    lr: float = sweepable(3e-4)
    tau: float = sweepable(0.005)
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    num_qs: int = 10
    critic_layer_norm: bool = True
    actor_layer_norm: bool = False
    init_temperature: float = 1.0
    target_entropy_multiplier: float = 0.5  # target entropy = -0.5 * chunk_length * action_dim
    target_subsample: int | None = None
    backup_entropy: bool = False  # true: subtract gamma^h * temperature * log pi(a'|s') in the target
    bc_alpha: float = sweepable(0.0)  # weight of -log pi(dataset chunk | s); QC-RLPD: 0.01
    PRESETS = {"debug": {"hidden_dims": (64, 64)}}  # sizes of preset=debug's tiny networks
    TAKES_RHO = True  # agents/critic.py `bootstrap`

    def __post_init__(self):
        if self.target_subsample is not None and not 1 <= self.target_subsample <= self.num_qs:
            raise ValueError(
                f"target_subsample must be null or in [1, num_qs={self.num_qs}], got {self.target_subsample}"
            )

    def target_entropy(self, action_dim: int) -> float:
        """-multiplier * the policy's output size (a whole chunk when chunking)."""
        return -self.target_entropy_multiplier * self.policy_dim(action_dim)


class Agent(step.TDAgent):
    """params: critic, actor (a tanh_gaussian.TanhGaussianActor), log_temperature (a scalar)."""

    critic_net: Critic = flax.struct.field(pytree_node=False)
    actor_net: tg.TanhGaussianActor = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int | tuple[int, ...], action_dim: int, config: Config) -> Agent:
        policy_dim = config.policy_dim(action_dim)
        critic_net = Critic(
            config.hidden_dims,
            config.num_qs,
            config.critic_layer_norm,
            rlpd_style=True,
            encoder=config.encoder,
        )
        actor_net = tg.TanhGaussianActor(
            config.hidden_dims, policy_dim, config.actor_layer_norm, encoder=config.encoder
        )
        # One Adam over the summed losses equals one Adam per loss: each loss reaches only its own parameters.
        optimizer = step.adam(config.lr)

        @jax.jit  # one compilation instead of one per eager initialiser op: seconds saved on a CPU
        def initial_state(key):
            critic_key, actor_key = jax.random.split(key)
            obs = example_observations(obs_dim)
            params = {
                "critic": critic_net.init(critic_key, obs, jnp.zeros((1, policy_dim))),
                "actor": actor_net.init(actor_key, obs),
                "log_temperature": jnp.asarray(math.log(config.init_temperature), jnp.float32),
            }
            return params, params["critic"], optimizer.init(params)

        rng, init_key = jax.random.split(jax.random.PRNGKey(seed))
        params, target_critic, opt_state = initial_state(init_key)
        return cls(
            rng=rng,
            params=params,
            target_critic=target_critic,
            opt_state=opt_state,
            config=config,
            action_dim=action_dim,
            critic_net=critic_net,
            actor_net=actor_net,
            optimizer=optimizer,
        )

    @property
    def policy_dim(self) -> int:
        return self.config.policy_dim(self.action_dim)

    def _distribution(self, actor_params: dict, encoded: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Means and clipped log-stds of the pre-tanh Gaussian, each (batch, policy_dim), from the actor's
        features of the observations (networks.encode)."""
        return tg.distribution(self.actor_net, actor_params, encoded)

    def _sample(self, actor_params: dict, encoded: jax.Array, noise: jax.Array) -> tuple[jax.Array, ...]:
        """Reparameterised flat actions (batch, policy_dim) and their log-probabilities (batch,)."""
        return tg.sample(*self._distribution(actor_params, encoded), noise)

    def sample_actions(
        self, observations: jax.Array, key: jax.Array, deterministic: bool = False
    ) -> jax.Array:
        """Actions to execute open-loop: (batch, steps, action_dim), steps = chunk_length or 1.

        Stochastic by default (exploration, and the reference's evaluation); `deterministic` gives tanh(mean).
        observations: (batch, obs_dim)
        """
        actor = self.params["actor"]
        means, log_stds = self._distribution(actor, encode(self.actor_net, actor, observations))
        if not deterministic:
            means = means + jnp.exp(log_stds) * jax.random.normal(key, means.shape)
        return jnp.tanh(means).reshape(observations.shape[0], -1, self.action_dim)

    def draw_noise(self, key: jax.Array, batch_size: int) -> dict:
        """All randomness of one update, drawn up front so the losses are plain functions of their inputs."""
        next_key, actor_key, subset_key = jax.random.split(key, 3)
        shape = (batch_size, self.policy_dim)
        noise = {
            "next_actions": jax.random.normal(next_key, shape),
            "actions": jax.random.normal(actor_key, shape),
        }
        if self.config.target_subsample is not None:
            permutation = jax.random.permutation(subset_key, self.config.num_qs)
            noise["target_critics"] = permutation[: self.config.target_subsample]
        return noise

    def critic_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """Chunk-level TD loss; the target bootstraps from a' ~ pi(s_{t+h}) (no gradient flows into it)."""
        cfg = self.config
        next_observations = batch["next_observations"][:, -1]
        next_encoded = encode(self.actor_net, params["actor"], next_observations)
        next_actions, next_log_probs = self._sample(params["actor"], next_encoded, noise["next_actions"])
        next_qs = self.critic_net.apply(self.target_critic, next_observations, next_actions)
        if cfg.target_subsample is None:
            next_q = td.bootstrap(next_qs, "mean", cfg.rho)
        else:
            next_q = td.aggregate(next_qs[noise["target_critics"]], "min")
        if cfg.backup_entropy:
            next_q = next_q - jnp.exp(params["log_temperature"]) * next_log_probs
        target = td.chunk_target(batch, next_q, cfg.discount)
        actions = td.critic_actions(batch["actions"], cfg.action_chunking)
        qs = self.critic_net.apply(params["critic"], batch["observations"], actions)
        return td.regression(qs, target, batch["valid"])

    def bc_log_prob(self, actor_params: dict, encoded: jax.Array, batch: dict) -> jax.Array:
        """log pi(dataset actions | s): (batch,), summed over the steps that belong to the chunk's episode.

        The policy is a diagonal Gaussian before the tanh, so this is the exact log-probability of the chunk's
        valid prefix; steps past an episode end (valid = 0) are another episode's actions and are left out.
        """
        means, log_stds = self._distribution(actor_params, encoded)
        steps = means.shape[-1] // self.action_dim
        actions = batch["actions"][:, :steps].reshape(means.shape)
        pre_tanh = jnp.arctanh(jnp.clip(actions, -1.0 + ATANH_CLIP, 1.0 - ATANH_CLIP))
        per_step = tg.log_prob(pre_tanh, means, log_stds).reshape(-1, steps, self.action_dim).sum(-1)
        return (per_step * batch["valid"][:, :steps]).sum(-1)

    def actor_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """temperature * log pi(a|s) - mean_k Q_k(s, a) with a ~ pi reparameterised,
        plus bc_alpha * (-log pi(dataset chunk | s))."""
        observations = batch["observations"]
        encoded = encode(self.actor_net, params["actor"], observations)
        actions, log_probs = self._sample(params["actor"], encoded, noise["actions"])
        qs = self.critic_net.apply(jax.lax.stop_gradient(params["critic"]), observations, actions)
        temperature = jnp.exp(jax.lax.stop_gradient(params["log_temperature"]))
        sac_loss = (temperature * log_probs - qs.mean(axis=0)).mean()
        bc_loss = -self.bc_log_prob(params["actor"], encoded, batch).mean()
        loss = sac_loss + self.config.bc_alpha * bc_loss
        return loss, {
            "actor_loss": loss,
            "sac_loss": sac_loss,
            "bc_loss": bc_loss,
            "entropy": -log_probs.mean(),
            "q": qs.mean(),
        }

    def temperature_loss(self, params: dict, entropy: jax.Array) -> tuple[jax.Array, dict]:
        target = self.config.target_entropy(self.action_dim)
        return tg.temperature_loss(params["log_temperature"], entropy, target)

    def total_loss(self, params: dict, batch: dict, noise: dict) -> tuple[jax.Array, dict]:
        critic = self.critic_loss(batch, params, noise)
        actor = self.actor_loss(batch, params, noise)
        temperature = self.temperature_loss(params, actor[1]["entropy"])
        return step.sum_losses(critic=critic, actor=actor, temperature=temperature)

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One Adam step on the summed critic, actor and temperature losses, then the Polyak target update."""
        return step.with_target_critic(self, batch)
