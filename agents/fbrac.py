"""FBRAC: a behaviour flow that maximises Q by backpropagation through its ODE, a baseline of QAM (Li & Levine
2026; ColinQiyangLi/qam agents/fbrac.py).

The flow v(s, x, u) over chunks is the policy. Its loss is flow matching on dataset chunks plus
-Q(s, a(z)) / alpha, where a(z) is the flow's Euler integration from noise z and the gradient runs through
every Euler step into the flow's parameters (`flow.sample_flow`). The chunked critic bootstraps from the
flow's action at s_{t+h}, mean - rho * std over 10 critics (`critic.bootstrap`).
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from agents import critic as td
from agents import step
from agents.config import AgentConfig, sweepable
from agents.flow import euler_sample, flow_matching_loss, network_velocity, sample_flow
from agents.networks import Critic, VectorField, encode, example_observations


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """Defaults: the authors' get_config (agents/fbrac.py) with reproduce.py's common values (10 critics,
    rho = 0.5, chunking on); configs/qam_method/fbrac.yaml holds the per-domain alpha."""

    TAKES_RHO = True  # its target reads rho
    lr: float = sweepable(3e-4)
    tau: float = sweepable(0.005)
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    num_qs: int = 10
    q_agg: str = "mean"  # the target's reduction where rho is None
    rho: float | None = 0.5  # mean - rho * std over the target critics (critic.bootstrap); None: q_agg
    critic_layer_norm: bool = True
    actor_layer_norm: bool = False
    flow_steps: int = 10
    alpha: float = sweepable(100.0)  # divides the Q term
    PRESETS = {"debug": {"hidden_dims": (64, 64)}}


class Agent(step.TDAgent):
    critic_net: Critic = flax.struct.field(pytree_node=False)
    flow_net: VectorField = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int | tuple[int, ...], action_dim: int, config: Config) -> Agent:
        policy_dim = config.policy_dim(action_dim)
        critic_net = Critic(
            config.hidden_dims, config.num_qs, config.critic_layer_norm, encoder=config.encoder
        )
        flow_net = VectorField(config.hidden_dims, policy_dim, config.actor_layer_norm, config.encoder)
        rng, critic_key, flow_key = jax.random.split(jax.random.PRNGKey(seed), 3)
        obs, act = example_observations(obs_dim), jnp.zeros((1, policy_dim))
        params = {
            "critic": critic_net.init(critic_key, obs, act),
            "actor_flow": flow_net.init(flow_key, obs, act, jnp.zeros((1, 1))),
        }
        return cls(
            rng=rng,
            action_dim=action_dim,
            critic_net=critic_net,
            flow_net=flow_net,
            **step.training_state(config, params),
        )

    @property
    def policy_dim(self) -> int:
        return self.config.policy_dim(self.action_dim)

    def sample_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """(batch, steps, action_dim), steps = chunk_length or 1; observations: (batch, obs_dim)."""
        noise = jax.random.normal(key, (observations.shape[0], self.policy_dim))
        actions = sample_flow(
            self.flow_net, self.params["actor_flow"], observations, noise, self.config.flow_steps
        )
        return actions.reshape(observations.shape[0], -1, self.action_dim)

    def draw_noise(self, key: jax.Array, batch_size: int) -> dict:
        """All randomness of one update, drawn up front so the losses are plain functions of their inputs."""
        keys = jax.random.split(key, 4)
        shape = (batch_size, self.policy_dim)
        return {
            "next_actions": jax.random.normal(keys[0], shape),
            "flow_x0": jax.random.normal(keys[1], shape),
            "flow_times": jax.random.uniform(keys[2], (batch_size, 1)),
            "actor": jax.random.normal(keys[3], shape),
        }

    def critic_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        cfg = self.config
        next_observations = batch["next_observations"][:, -1]
        frozen_flow = jax.lax.stop_gradient(params["actor_flow"])
        next_actions = sample_flow(
            self.flow_net, frozen_flow, next_observations, noise["next_actions"], cfg.flow_steps
        )
        next_qs = self.critic_net.apply(self.target_critic, next_observations, next_actions)
        target = td.chunk_target(batch, td.bootstrap(next_qs, cfg.q_agg, cfg.rho), cfg.discount)
        actions = td.critic_actions(batch["actions"], cfg.action_chunking)
        qs = self.critic_net.apply(params["critic"], batch["observations"], actions)
        return td.regression(qs, target, batch["valid"])

    def actor_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """Flow matching (one weight per chunk, valid[h-1], as the authors) + -mean Q(s, ODE(z)) / alpha, the
        gradient through the Euler steps; the critic is held fixed. Both terms share one encoding."""
        cfg = self.config
        observations = batch["observations"]
        targets = batch["actions"] if cfg.action_chunking else batch["actions"][:, :1]
        velocity = network_velocity(self.flow_net, params["actor_flow"])
        features = encode(self.flow_net, params["actor_flow"], observations)
        step_weights = jnp.broadcast_to(batch["valid"][:, -1:], targets.shape[:2])
        bc_flow_loss = flow_matching_loss(
            velocity, features, targets, noise["flow_x0"], noise["flow_times"], step_weights
        )
        actions = euler_sample(velocity, features, noise["actor"], cfg.flow_steps)
        qs = self.critic_net.apply(jax.lax.stop_gradient(params["critic"]), observations, actions)
        q_loss = -qs.mean()
        loss = bc_flow_loss + q_loss / cfg.alpha
        return loss, {"actor_loss": loss, "bc_flow_loss": bc_flow_loss, "q_loss": q_loss}

    def total_loss(self, params: dict, batch: dict, noise: dict) -> tuple[jax.Array, dict]:
        return step.sum_losses(
            critic=self.critic_loss(batch, params, noise), actor=self.actor_loss(batch, params, noise)
        )

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One Adam step on the summed critic and actor losses, then the Polyak target update."""
        return step.with_target_critic(self, batch)
