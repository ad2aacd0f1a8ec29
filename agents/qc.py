"""QC: best-of-N sampling from a behaviour model over action chunks (Li, Zhou & Levine 2025).

Only an expressive behaviour model (flow or diffusion, agents/behavior.py) is fit to the data's chunks;
there is no policy network. To act, and to pick the bootstrap chunk a' of the TD target, N chunks are
drawn from the behaviour model and the one the online critic scores highest is kept, so the policy stays
on the data's support while the critic steers it. chunk_length = 1 is BFN; action_chunking = False with
chunk_length = 5 is BFN-n (behaviour model and critic see one action, the target keeps the 5-step return).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from agents import behavior as bm
from agents import best_of_n as bon
from agents import critic as td
from agents import step
from agents.config import AgentConfig, sweepable
from agents.networks import Critic, example_observations


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """Paper defaults (spec, "QC (best-of-N)"). num_samples: the authors' robomimic N, where the paper gives
    no per-domain value (configs/agent/qc.yaml holds the paper's table: 32, 64 on puzzle-3x3)."""

    lr: float = sweepable(3e-4)
    tau: float = sweepable(0.005)
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    num_qs: int = 2
    q_agg: str = "mean"  # ensemble reduction for the target and for scoring the N samples
    critic_layer_norm: bool = True
    actor_layer_norm: bool = False  # the behaviour model's MLP
    behavior: str = "flow"  # flow | diffusion
    num_samples: int = 16
    flow_steps: int = 10  # Euler steps per flow sample
    diffusion_steps: int = 10  # denoising steps T (behavior=diffusion)
    diffusion_schedule: str = "cosine"  # cosine | linear
    diffusion_sampler: str = "ddpm"  # ddpm (stochastic) | ddim (deterministic)
    PRESETS = {"debug": {"hidden_dims": (64, 64)}}  # sizes of preset=debug's tiny networks
    TAKES_RHO = True  # agents/critic.py `bootstrap`

    def __post_init__(self):
        choices = {
            "behavior": bm.BEHAVIORS,
            "diffusion_schedule": bm.DIFFUSION_SCHEDULES,
            "diffusion_sampler": bm.DIFFUSION_SAMPLERS,
            "q_agg": ("mean", "min"),
        }
        for name, valid in choices.items():
            value = getattr(self, name)
            if value not in valid:
                raise ValueError(f"invalid agent setting {name}={value!r}: expected one of {valid}")
        for name in ("num_samples", "flow_steps", "diffusion_steps"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"invalid agent setting {name}={value!r}: expected an integer >= 1")


class Agent(step.TDAgent):
    critic_net: Critic = flax.struct.field(pytree_node=False)
    behavior: bm.Flow | bm.Diffusion = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int | tuple[int, ...], action_dim: int, config: Config) -> Agent:
        policy_dim = config.policy_dim(action_dim)
        critic_net = Critic(
            config.hidden_dims, config.num_qs, config.critic_layer_norm, encoder=config.encoder
        )
        behavior = bm.make(config, policy_dim)
        rng, critic_key, behavior_key = jax.random.split(jax.random.PRNGKey(seed), 3)
        obs, act = example_observations(obs_dim), jnp.zeros((1, policy_dim))
        params = {
            "critic": critic_net.init(critic_key, obs, act),
            "behavior": behavior.init(behavior_key, obs, act),
        }
        return cls(
            rng=rng,
            action_dim=action_dim,
            critic_net=critic_net,
            behavior=behavior,
            **step.training_state(config, params),
        )

    @property
    def policy_dim(self) -> int:
        return self.config.policy_dim(self.action_dim)

    def best_of_n(self, params: dict, observations: jax.Array, noise: Any) -> jax.Array:
        """The best of num_samples behaviour chunks under the online critic (ensemble reduced by q_agg):
        (batch, policy_dim). noise: behavior.sampling_noise(key, (batch, num_samples))."""
        cfg = self.config
        chunks = bon.candidates(self.behavior, params["behavior"], observations, noise, cfg.num_samples)
        return bon.best(self.critic_net, params["critic"], observations, chunks, cfg.q_agg)

    def sample_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """Actions to execute open-loop: (batch, steps, action_dim), steps = chunk_length or 1.

        observations: (batch, obs_dim)
        """
        noise = self.behavior.sampling_noise(key, (observations.shape[0], self.config.num_samples))
        actions = self.best_of_n(self.params, observations, noise)
        return actions.reshape(observations.shape[0], -1, self.action_dim)

    def draw_noise(self, key: jax.Array, batch_size: int) -> dict:
        """All randomness of one update, drawn up front so the losses are plain functions of their inputs."""
        next_key, behavior_key = jax.random.split(key)
        return {
            "next_actions": self.behavior.sampling_noise(next_key, (batch_size, self.config.num_samples)),
            "behavior": self.behavior.draw_noise(behavior_key, batch_size),
        }

    def critic_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """TD loss with a' = best of N at s_{t+h} under the online critic, evaluated by the target critic."""
        cfg = self.config
        next_observations = batch["next_observations"][:, -1]
        next_actions = self.best_of_n(jax.lax.stop_gradient(params), next_observations, noise["next_actions"])
        next_qs = self.critic_net.apply(self.target_critic, next_observations, next_actions)
        next_q = td.bootstrap(next_qs, cfg.q_agg, cfg.rho)
        target = td.chunk_target(batch, next_q, cfg.discount)
        actions = td.critic_actions(batch["actions"], cfg.action_chunking)
        qs = self.critic_net.apply(params["critic"], batch["observations"], actions)
        return td.regression(qs, target, batch["valid"])

    def behavior_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """Behaviour cloning of the data's chunks weighted per step by `valid` (BFN-n: first action only)."""
        if self.config.action_chunking:
            targets, weights = batch["actions"], batch["valid"]
        else:
            targets, weights = batch["actions"][:, :1], None
        observations = batch["observations"]
        loss = self.behavior.loss(params["behavior"], observations, targets, noise["behavior"], weights)
        return loss, {f"bc_{self.config.behavior}_loss": loss}

    def total_loss(self, params: dict, batch: dict, noise: dict) -> tuple[jax.Array, dict]:
        return step.sum_losses(
            critic=self.critic_loss(batch, params, noise), actor=self.behavior_loss(batch, params, noise)
        )

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One Adam step on the summed critic and behaviour losses, then the Polyak target update."""
        return step.with_target_critic(self, batch)
