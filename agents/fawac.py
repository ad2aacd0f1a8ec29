"""FAWAC: advantage-weighted flow matching, a baseline of QAM (Li & Levine 2026; ColinQiyangLi/qam fawac.py).

A behaviour flow v(s, x, u) over chunks is fit by flow matching where each dataset chunk's loss is weighted
by min(exp(inv_temp * (Q(s, a) - V(s))), 100), AWAC's weight: the flow itself is the policy, sampled by
Euler steps from noise. The chunked critic bootstraps from the flow's own action at s_{t+h} (mean - rho * std
over 10 critics, `critic.bootstrap`), and V(s) regresses on every target critic's Q of the dataset chunk.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from agents import critic as td
from agents import step
from agents.config import AgentConfig, sweepable
from agents.flow import flow_matching_loss, network_velocity, sample_flow
from agents.networks import Critic, Value, VectorField, encode, example_observations

AWR_WEIGHT_CAP = 100.0  # the authors' (and IQL's) ceiling on exp(inv_temp * advantage)


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """Defaults: the authors' get_config (agents/fawac.py) with reproduce.py's common values (10 critics,
    rho = 0.5, chunking on); configs/qam_method/fawac.yaml holds the per-domain inv_temp."""

    TAKES_RHO = True  # its target reads rho
    lr: float = sweepable(3e-4)
    tau: float = sweepable(0.005)
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    num_qs: int = 10
    q_agg: str = "mean"  # the target's reduction where rho is None
    rho: float | None = 0.5  # mean - rho * std over the target critics (critic.bootstrap); None: q_agg
    critic_layer_norm: bool = True  # critic and value (the authors' value_layer_norm)
    actor_layer_norm: bool = False
    flow_steps: int = 10
    inv_temp: float = sweepable(10.0)
    PRESETS = {"debug": {"hidden_dims": (64, 64)}}


class Agent(step.TDAgent):
    critic_net: Critic = flax.struct.field(pytree_node=False)
    value_net: Value = flax.struct.field(pytree_node=False)
    flow_net: VectorField = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int | tuple[int, ...], action_dim: int, config: Config) -> Agent:
        policy_dim = config.policy_dim(action_dim)
        critic_net = Critic(
            config.hidden_dims, config.num_qs, config.critic_layer_norm, encoder=config.encoder
        )
        value_net = Value(config.hidden_dims, config.critic_layer_norm, config.encoder)
        flow_net = VectorField(config.hidden_dims, policy_dim, config.actor_layer_norm, config.encoder)
        rng, critic_key, value_key, flow_key = jax.random.split(jax.random.PRNGKey(seed), 4)
        obs, act = example_observations(obs_dim), jnp.zeros((1, policy_dim))
        params = {
            "critic": critic_net.init(critic_key, obs, act),
            "value": value_net.init(value_key, obs),
            "actor": flow_net.init(flow_key, obs, act, jnp.zeros((1, 1))),
        }
        return cls(
            rng=rng,
            action_dim=action_dim,
            critic_net=critic_net,
            value_net=value_net,
            flow_net=flow_net,
            **step.training_state(config, params),
        )

    @property
    def policy_dim(self) -> int:
        return self.config.policy_dim(self.action_dim)

    def flow_actions(self, flow_params: dict, observations: jax.Array, noise: jax.Array) -> jax.Array:
        """Flat clipped flow actions (batch, policy_dim)."""
        return sample_flow(self.flow_net, flow_params, observations, noise, self.config.flow_steps)

    def sample_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """(batch, steps, action_dim), steps = chunk_length or 1; observations: (batch, obs_dim)."""
        noise = jax.random.normal(key, (observations.shape[0], self.policy_dim))
        actions = self.flow_actions(self.params["actor"], observations, noise)
        return actions.reshape(observations.shape[0], -1, self.action_dim)

    def draw_noise(self, key: jax.Array, batch_size: int) -> dict:
        """All randomness of one update, drawn up front so the losses are plain functions of their inputs."""
        keys = jax.random.split(key, 3)
        shape = (batch_size, self.policy_dim)
        return {
            "next_actions": jax.random.normal(keys[0], shape),
            "flow_x0": jax.random.normal(keys[1], shape),
            "flow_times": jax.random.uniform(keys[2], (batch_size, 1)),
        }

    def critic_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """TD plus V(s) regressed on each target critic's Q(s, a), both weighted by valid[h-1]."""
        cfg = self.config
        next_observations = batch["next_observations"][:, -1]
        frozen_actor = jax.lax.stop_gradient(params["actor"])
        next_actions = self.flow_actions(frozen_actor, next_observations, noise["next_actions"])
        next_qs = self.critic_net.apply(self.target_critic, next_observations, next_actions)
        target = td.chunk_target(batch, td.bootstrap(next_qs, cfg.q_agg, cfg.rho), cfg.discount)
        actions = td.critic_actions(batch["actions"], cfg.action_chunking)
        qs = self.critic_net.apply(params["critic"], batch["observations"], actions)
        critic_loss, info = td.regression(qs, target, batch["valid"])
        target_qs = self.critic_net.apply(self.target_critic, batch["observations"], actions)
        v = self.value_net.apply(params["value"], batch["observations"])
        value_loss = td.critic_loss(v[None], target_qs, batch["valid"])  # V against each of the num_qs
        return critic_loss + value_loss, {**info, "value_loss": value_loss}

    def actor_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """Flow matching weighted per chunk by AWAC's capped exp(inv_temp * (mean_k Q_k - V)) * valid[h-1]."""
        cfg = self.config
        observations = batch["observations"]
        actions = td.critic_actions(batch["actions"], cfg.action_chunking)
        frozen = jax.lax.stop_gradient(params)
        advantages = self.critic_net.apply(frozen["critic"], observations, actions).mean(0)
        advantages = advantages - self.value_net.apply(frozen["value"], observations)
        weights = jnp.minimum(jnp.exp(advantages * cfg.inv_temp), AWR_WEIGHT_CAP)
        targets = batch["actions"] if cfg.action_chunking else batch["actions"][:, :1]
        # one weight per chunk: the authors weight by the chunk's last valid flag, not each step's
        step_weights = jnp.broadcast_to((weights * batch["valid"][:, -1])[:, None], targets.shape[:2])
        features = encode(self.flow_net, params["actor"], observations)
        loss = flow_matching_loss(
            network_velocity(self.flow_net, params["actor"]),
            features,
            targets,
            noise["flow_x0"],
            noise["flow_times"],
            step_weights,
        )
        return loss, {"actor_loss": loss, "adv_mean": advantages.mean(), "weight_mean": weights.mean()}

    def total_loss(self, params: dict, batch: dict, noise: dict) -> tuple[jax.Array, dict]:
        return step.sum_losses(
            critic=self.critic_loss(batch, params, noise), actor=self.actor_loss(batch, params, noise)
        )

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One Adam step on the summed critic, value and actor losses, then the Polyak target update."""
        return step.with_target_critic(self, batch)
