"""CGQL, CGQL-M, CGQL-L: classifier-guided Q-learning, a baseline of QAM (Li & Levine 2026;
ColinQiyangLi/qam agents/cgql.py), one module whose `mode` picks the critic that guides.

A behaviour flow over chunks is fit by flow matching; acting integrates a slow (Polyak) copy of it with
classifier guidance by the online critic (`guidance.guided_euler_sample`). mode 'simple' reads the critic at
u = 1 on the noisy x_u; 'mse' and 'linex' also distil the critic at noisy actions x_u = (1 - u) z + u a from
the target critic at the clean chunk, weighted by noisy_coef, and read it at u. The chunked critic
bootstraps from a guided sample at s_{t+h}, mean - rho * std over 10 critics (`critic.bootstrap`).
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import optax

from agents import critic as td
from agents import guidance, step
from agents.config import AgentConfig, sweepable
from agents.flow import flow_matching_loss, network_velocity
from agents.networks import Critic, VectorField, apply_encoded, encode, example_observations


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """Defaults: the authors' get_config (agents/cgql.py) with reproduce.py's common values (10 critics,
    rho = 0.5, chunking on); configs/qam_method/cgql*.yaml hold the per-domain values."""

    TAKES_RHO = True  # its target reads rho
    lr: float = sweepable(3e-4)
    tau: float = sweepable(0.005)  # target critic and the guided (target) flow
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    num_qs: int = 10
    q_agg: str = "mean"  # the target's reduction where rho is None
    rho: float | None = 0.5  # mean - rho * std over the target critics (critic.bootstrap); None: q_agg
    critic_layer_norm: bool = True
    actor_layer_norm: bool = False
    flow_steps: int = 10
    mode: str = "simple"  # guidance.MODES
    inv_temp: float = sweepable(1.0)  # tau of the guided density exp(inv_temp Q)
    guidance_coef: float = sweepable(0.1)  # the authors' vartheta
    noisy_coef: float = sweepable(0.001)  # weight of the noisy-action distillation ('mse', 'linex')
    isd_clip: float = sweepable(5.0)  # 'linex': where its exponential turns linear
    target_guidance: bool = True  # guide the Polyak copy of the flow (the authors' default), else the flow
    PRESETS = {"debug": {"hidden_dims": (64, 64)}}

    def __post_init__(self):
        if self.mode not in guidance.MODES:
            raise ValueError(f"agent.mode must be one of {guidance.MODES}, got {self.mode!r}")


class Agent(step.TDAgent):
    target_actor: dict
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
            "critic": critic_net.init(critic_key, obs, guidance.with_time(act, jnp.ones((1, 1)))),
            "actor": flow_net.init(flow_key, obs, act, jnp.zeros((1, 1))),
        }
        return cls(
            rng=rng,
            action_dim=action_dim,
            target_actor=jax.tree_util.tree_map(jnp.copy, params["actor"]),
            critic_net=critic_net,
            flow_net=flow_net,
            **step.training_state(config, params),
        )

    @property
    def policy_dim(self) -> int:
        return self.config.policy_dim(self.action_dim)

    def q(self, critic_params: dict, observations: jax.Array, actions: jax.Array, times) -> jax.Array:
        """(num_qs, batch) values of the time-conditioned critic; times: (batch, 1) or a scalar."""
        return self.critic_net.apply(critic_params, observations, guidance.with_time(actions, times))

    def guided_actions(self, params: dict, target_actor: dict, observations, noise) -> jax.Array:
        """Flat clipped guided chunks (batch, policy_dim); each network encodes the observations once."""
        cfg = self.config
        flow_params = target_actor if cfg.target_guidance else params["actor"]
        critic_features = encode(self.critic_net, params["critic"], observations)

        def score(_, x, times):
            read_at = jnp.ones_like(times) if cfg.mode == "simple" else times
            mean_q = lambda x: apply_encoded(  # noqa: E731
                self.critic_net, params["critic"], critic_features, guidance.with_time(x, read_at)
            )
            return jax.grad(lambda x: mean_q(x).mean(0).sum())(x)

        return guidance.guided_euler_sample(
            network_velocity(self.flow_net, flow_params),
            score,
            encode(self.flow_net, flow_params, observations),
            noise,
            cfg.flow_steps,
            cfg.inv_temp,
            cfg.guidance_coef,
        )

    def sample_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """(batch, steps, action_dim), steps = chunk_length or 1; observations: (batch, obs_dim)."""
        noise = jax.random.normal(key, (observations.shape[0], self.policy_dim))
        actions = self.guided_actions(self.params, self.target_actor, observations, noise)
        return actions.reshape(observations.shape[0], -1, self.action_dim)

    def draw_noise(self, key: jax.Array, batch_size: int) -> dict:
        """All randomness of one update, drawn up front so the losses are plain functions of their inputs."""
        keys = jax.random.split(key, 5)
        shape = (batch_size, self.policy_dim)
        return {
            "next_actions": jax.random.normal(keys[0], shape),
            "flow_x0": jax.random.normal(keys[1], shape),
            "flow_times": jax.random.uniform(keys[2], (batch_size, 1)),
            "noisy_x0": jax.random.normal(keys[3], shape),
            "noisy_times": jax.random.uniform(keys[4], (batch_size, 1)),
        }

    def critic_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """TD at u = 1; 'mse' / 'linex' add noisy_coef times the distillation at (x_u, u)."""
        cfg = self.config
        next_observations = batch["next_observations"][:, -1]
        frozen = jax.lax.stop_gradient(params)
        next_actions = self.guided_actions(
            frozen, self.target_actor, next_observations, noise["next_actions"]
        )
        next_qs = self.q(self.target_critic, next_observations, next_actions, 1.0)
        target = td.chunk_target(batch, td.bootstrap(next_qs, cfg.q_agg, cfg.rho), cfg.discount)
        actions = td.critic_actions(batch["actions"], cfg.action_chunking)
        observations = batch["observations"]
        critic_features = encode(self.critic_net, params["critic"], observations)
        qs = apply_encoded(
            self.critic_net, params["critic"], critic_features, guidance.with_time(actions, 1.0)
        )
        critic_loss, info = td.regression(qs, target, batch["valid"])
        if cfg.mode == "simple":
            return critic_loss, info
        times = noise["noisy_times"]
        noisy = (1.0 - times) * noise["noisy_x0"] + times * actions
        noisy_qs = apply_encoded(
            self.critic_net, params["critic"], critic_features, guidance.with_time(noisy, times)
        )
        clean_qs = self.q(self.target_critic, observations, actions, 1.0)
        noisy_loss = guidance.distillation_loss(
            noisy_qs, clean_qs, batch["valid"][:, -1], cfg.mode, cfg.inv_temp, cfg.isd_clip
        )
        return critic_loss + cfg.noisy_coef * noisy_loss, {**info, "noisy_critic_loss": noisy_loss}

    def actor_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """Flow matching, one weight per chunk (valid[h-1], as the authors); no Q term."""
        cfg = self.config
        targets = batch["actions"] if cfg.action_chunking else batch["actions"][:, :1]
        loss = flow_matching_loss(
            network_velocity(self.flow_net, params["actor"]),
            encode(self.flow_net, params["actor"], batch["observations"]),
            targets,
            noise["flow_x0"],
            noise["flow_times"],
            jnp.broadcast_to(batch["valid"][:, -1:], targets.shape[:2]),
        )
        return loss, {"flow_loss": loss}

    def total_loss(self, params: dict, batch: dict, noise: dict) -> tuple[jax.Array, dict]:
        return step.sum_losses(
            critic=self.critic_loss(batch, params, noise), actor=self.actor_loss(batch, params, noise)
        )

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One Adam step on the summed losses, then the Polyak updates of the target critic and the target
        flow, both from the parameters before the step (the authors' `target_update`)."""
        target_actor = optax.incremental_update(self.params["actor"], self.target_actor, self.config.tau)
        agent, info = step.with_target_critic(self, batch)
        return agent.replace(target_actor=target_actor), info
