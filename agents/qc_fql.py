"""QC-FQL: Flow Q-Learning over action chunks (Li, Zhou & Levine 2025; Park et al. 2025).

A behaviour flow v(s, x, u) is fit to dataset chunks by flow matching; a one-step policy mu(s, z) is
distilled from 10 Euler steps of that flow while maximising a chunked critic Q(s_t, a_t..a_{t+h-1}) trained
with the chunk-level n-step target. chunk_length = 1 is FQL; action_chunking = False with chunk_length = 5
is FQL-n (the critic and policy see one action, the target keeps the 5-step return).
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from agents import critic as td
from agents import step
from agents.config import AgentConfig, sweepable
from agents.flow import euler_sample, flow_matching_loss, network_velocity
from agents.networks import Critic, VectorField, encode, example_observations


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """Paper defaults (spec, "QC-FQL"). alpha: the reference's (ColinQiyangLi/qc agents/acfql.py get_config),
    where the paper gives no per-domain value (configs/agent/qc_fql.yaml holds the paper's table)."""

    lr: float = sweepable(3e-4)
    tau: float = sweepable(0.005)
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    num_qs: int = 2
    q_agg: str = "mean"
    critic_layer_norm: bool = True
    actor_layer_norm: bool = False
    flow_steps: int = 10
    alpha: float = sweepable(100.0)
    PRESETS = {"debug": {"hidden_dims": (64, 64)}}  # sizes of preset=debug's tiny networks
    TAKES_RHO = True  # agents/critic.py `bootstrap`


class Agent(step.TDAgent):
    critic_net: Critic = flax.struct.field(pytree_node=False)
    flow_net: VectorField = flax.struct.field(pytree_node=False)
    onestep_net: VectorField = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int | tuple[int, ...], action_dim: int, config: Config) -> Agent:
        policy_dim = config.policy_dim(action_dim)
        critic_net = Critic(
            config.hidden_dims, config.num_qs, config.critic_layer_norm, encoder=config.encoder
        )
        flow_net = VectorField(config.hidden_dims, policy_dim, config.actor_layer_norm, config.encoder)
        onestep_net = VectorField(config.hidden_dims, policy_dim, config.actor_layer_norm, config.encoder)
        rng, critic_key, flow_key, onestep_key = jax.random.split(jax.random.PRNGKey(seed), 4)
        obs, act = example_observations(obs_dim), jnp.zeros((1, policy_dim))
        params = {
            "critic": critic_net.init(critic_key, obs, act),
            "actor_bc_flow": flow_net.init(flow_key, obs, act, jnp.zeros((1, 1))),
            "actor_onestep_flow": onestep_net.init(onestep_key, obs, act),
        }
        return cls(
            rng=rng,
            action_dim=action_dim,
            critic_net=critic_net,
            flow_net=flow_net,
            onestep_net=onestep_net,
            **step.training_state(config, params),
        )

    def _policy(self, params: dict, observations: jax.Array, noise: jax.Array) -> jax.Array:
        """Flat clipped one-step actions (batch, policy_dim)."""
        return jnp.clip(self.onestep_net.apply(params["actor_onestep_flow"], observations, noise), -1.0, 1.0)

    def sample_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """Actions to execute open-loop: (batch, steps, action_dim), steps = chunk_length or 1.

        observations: (batch, obs_dim)
        """
        noise = jax.random.normal(key, (observations.shape[0], self.policy_dim))
        actions = self._policy(self.params, observations, noise)
        return actions.reshape(observations.shape[0], -1, self.action_dim)

    @property
    def policy_dim(self) -> int:
        return self.config.policy_dim(self.action_dim)

    def draw_noise(self, key: jax.Array, batch_size: int) -> dict:
        """All randomness of one update, drawn up front so the losses are plain functions of their inputs."""
        keys = jax.random.split(key, 4)
        shape = (batch_size, self.policy_dim)
        return {
            "next_actions": jax.random.normal(keys[0], shape),
            "flow_x0": jax.random.normal(keys[1], shape),
            "flow_times": jax.random.uniform(keys[2], (batch_size, 1)),
            "distill": jax.random.normal(keys[3], shape),
        }

    def critic_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        cfg = self.config
        next_observations = batch["next_observations"][:, -1]
        next_actions = self._policy(jax.lax.stop_gradient(params), next_observations, noise["next_actions"])
        next_qs = self.critic_net.apply(self.target_critic, next_observations, next_actions)
        next_q = td.bootstrap(next_qs, cfg.q_agg, cfg.rho)
        target = td.chunk_target(batch, next_q, cfg.discount)
        actions = td.critic_actions(batch["actions"], cfg.action_chunking)
        qs = self.critic_net.apply(params["critic"], batch["observations"], actions)
        return td.regression(qs, target, batch["valid"])

    def actor_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """Flow matching + alpha * distillation of the one-step policy + the Q term."""
        cfg = self.config
        observations = batch["observations"]
        if cfg.action_chunking:
            targets, weights = batch["actions"], batch["valid"]
        else:
            targets, weights = batch["actions"][:, :1], None

        flow_features = encode(self.flow_net, params["actor_bc_flow"], observations)
        bc_flow_loss = flow_matching_loss(
            network_velocity(self.flow_net, params["actor_bc_flow"]),
            flow_features,
            targets,
            noise["flow_x0"],
            noise["flow_times"],
            weights,
        )
        frozen_flow = jax.lax.stop_gradient(params["actor_bc_flow"])
        flow_actions = euler_sample(
            network_velocity(self.flow_net, frozen_flow),
            jax.lax.stop_gradient(flow_features),
            noise["distill"],
            cfg.flow_steps,
        )
        onestep_actions = self.onestep_net.apply(params["actor_onestep_flow"], observations, noise["distill"])
        distill_loss = jnp.square(onestep_actions - flow_actions).mean()
        actions = jnp.clip(onestep_actions, -1.0, 1.0)
        qs = self.critic_net.apply(jax.lax.stop_gradient(params["critic"]), observations, actions)
        q_loss = -qs.mean()
        loss = bc_flow_loss + cfg.alpha * distill_loss + q_loss
        return loss, {
            "actor_loss": loss,
            "bc_flow_loss": bc_flow_loss,
            "distill_loss": distill_loss,
            "q_loss": q_loss,
            "q": qs.mean(),
            "mse": jnp.square(actions - targets.reshape(actions.shape)).mean(),
        }

    def total_loss(self, params: dict, batch: dict, noise: dict) -> tuple[jax.Array, dict]:
        return step.sum_losses(
            critic=self.critic_loss(batch, params, noise), actor=self.actor_loss(batch, params, noise)
        )

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One Adam step on the summed critic and actor losses, then the Polyak target update."""
        return step.with_target_critic(self, batch)
