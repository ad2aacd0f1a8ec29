"""IQL: implicit Q-learning with an AWR policy (Kostrikov et al. 2022; Park et al. 2025's agents/iql.py).

V(s) is fit by an expectile regression to the target critic's min_k Q_k(s, a) on dataset actions; the critic
regresses to the chunk reward plus gamma^h * V(s_{t+h}), so no policy sample enters any target. The policy,
a Gaussian with a fixed std of 1 and no tanh, is fit by advantage-weighted regression with weights
min(exp(alpha * (min_k Q_k - V)), 100). IFQL (agents/ifql.py) reuses the value and critic losses here.
"""

from __future__ import annotations

import dataclasses
import math

import flax.struct
import jax
import jax.numpy as jnp

from agents import critic as td
from agents import step
from agents.config import AgentConfig, sweepable
from agents.networks import Actor, Critic, Value, example_observations

AWR_WEIGHT_CLIP = 100.0


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """Defaults of FQL's agents/iql.py get_config (spec, "IQL"); alpha per domain via configs/agent/iql.yaml.

    alpha multiplies the advantage inside the AWR exponent; q_agg reduces the ensemble for V's target and the
    AWR advantage (FQL: min of the two).
    """

    chunk_length: int = 1
    lr: float = sweepable(3e-4)
    tau: float = sweepable(0.005)  # Polyak rate of the target critic (the value has no target)
    # value, critic and actor MLPs (FQL value_hidden_dims, actor_hidden_dims)
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    num_qs: int = 2
    q_agg: str = "min"  # ensemble reduction for V's target and the AWR advantage (FQL: min of 2)
    critic_layer_norm: bool = True  # value and critic (FQL layer_norm)
    actor_layer_norm: bool = False
    expectile: float = sweepable(0.9)  # paper D.3 and FQL
    alpha: float = sweepable(10.0)
    PRESETS = {"debug": {"hidden_dims": (64, 64)}}  # sizes of preset=debug's tiny networks


def value_loss(agent, batch: dict, params: dict) -> tuple[jax.Array, dict]:
    """Expectile regression of V(s_t) to the target critic's reduced Q(s_t, a) on the dataset's actions;
    chunks that cross an episode end (valid[h-1] = 0, the critic never fits them) count 0.

    `agent` has critic_net, value_net, target_critic and a config with q_agg, expectile, action_chunking.
    """
    cfg = agent.config
    actions = td.critic_actions(batch["actions"], cfg.action_chunking)
    target_qs = agent.critic_net.apply(agent.target_critic, batch["observations"], actions)
    q = td.aggregate(target_qs, cfg.q_agg)
    v = agent.value_net.apply(params["value"], batch["observations"])
    loss = td.expectile_loss(q - v, cfg.expectile, batch["valid"][:, -1])
    return loss, {"value_loss": loss, "v_mean": v.mean(), "v_max": v.max(), "v_min": v.min()}


def critic_loss(agent, batch: dict, params: dict) -> tuple[jax.Array, dict]:
    """Every Q_k regressed to rewards[h-1] + gamma^h * masks[h-1] * V(s_{t+h}) (the online V: IQL keeps no
    target value), weighted by valid[h-1]."""
    cfg = agent.config
    next_v = agent.value_net.apply(params["value"], batch["next_observations"][:, -1])
    target = td.chunk_target(batch, next_v, cfg.discount)
    actions = td.critic_actions(batch["actions"], cfg.action_chunking)
    qs = agent.critic_net.apply(params["critic"], batch["observations"], actions)
    loss = td.critic_loss(qs, target, batch["valid"])
    return loss, {"critic_loss": loss, "q_mean": qs.mean(), "q_max": qs.max(), "q_min": qs.min()}


def awr_weights(advantages: jax.Array, alpha) -> jax.Array:
    """min(exp(alpha * advantage), 100): AWR's weights, clipped so that a few large advantages cannot take
    over the batch."""
    return jnp.minimum(jnp.exp(alpha * advantages), AWR_WEIGHT_CLIP)


class Agent(step.TDAgent):
    critic_net: Critic = flax.struct.field(pytree_node=False)
    value_net: Value = flax.struct.field(pytree_node=False)
    actor_net: Actor = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int | tuple[int, ...], action_dim: int, config: Config) -> Agent:
        policy_dim = config.policy_dim(action_dim)
        critic_net = Critic(
            config.hidden_dims, config.num_qs, config.critic_layer_norm, encoder=config.encoder
        )
        value_net = Value(config.hidden_dims, config.critic_layer_norm, config.encoder)
        actor_net = Actor(config.hidden_dims, policy_dim, config.actor_layer_norm, encoder=config.encoder)
        rng, critic_key, value_key, actor_key = jax.random.split(jax.random.PRNGKey(seed), 4)
        obs, act = example_observations(obs_dim), jnp.zeros((1, policy_dim))
        params = {
            "critic": critic_net.init(critic_key, obs, act),
            "value": value_net.init(value_key, obs),
            "actor": actor_net.init(actor_key, obs),
        }
        return cls(
            rng=rng,
            action_dim=action_dim,
            critic_net=critic_net,
            value_net=value_net,
            actor_net=actor_net,
            **step.training_state(config, params),
        )

    @property
    def policy_dim(self) -> int:
        return self.config.policy_dim(self.action_dim)

    def sample_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """Exploration (temperature 1): mean + N(0, 1) noise, clipped: (batch, steps, action_dim)."""
        means = self.actor_net.apply(self.params["actor"], observations)
        actions = jnp.clip(means + jax.random.normal(key, means.shape), -1.0, 1.0)
        return actions.reshape(observations.shape[0], -1, self.action_dim)

    def eval_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """Evaluation (temperature 0): the clipped mean."""
        means = self.actor_net.apply(self.params["actor"], observations)
        return jnp.clip(means, -1.0, 1.0).reshape(observations.shape[0], -1, self.action_dim)

    def draw_noise(self, key: jax.Array, batch_size: int) -> None:
        """The update draws no randomness: every target and weight comes from dataset actions."""
        return None

    value_loss = value_loss
    critic_loss = critic_loss

    def actor_loss(self, batch: dict, params: dict) -> tuple[jax.Array, dict]:
        """-awr_weight * log pi(dataset action | s), the weight from the online critic and value (no
        gradient); rows weighted by valid[h-1] like the critic's."""
        cfg = self.config
        observations = batch["observations"]
        actions = td.critic_actions(batch["actions"], cfg.action_chunking)
        frozen = jax.lax.stop_gradient(params)
        q = td.aggregate(self.critic_net.apply(frozen["critic"], observations, actions), cfg.q_agg)
        advantages = q - self.value_net.apply(frozen["value"], observations)
        weights = awr_weights(advantages, cfg.alpha)
        means = self.actor_net.apply(params["actor"], observations)
        log_probs = -0.5 * jnp.square(actions - means).sum(-1) - 0.5 * means.shape[-1] * math.log(2 * math.pi)
        loss = -(weights * log_probs * batch["valid"][:, -1]).mean()
        return loss, {
            "actor_loss": loss,
            "adv": advantages.mean(),
            "awr_weight": weights.mean(),
            "bc_log_prob": log_probs.mean(),
            "mse": jnp.square(means - actions).mean(),
        }

    def total_loss(self, params: dict, batch: dict, noise: None) -> tuple[jax.Array, dict]:
        return step.sum_losses(
            value=self.value_loss(batch, params),
            critic=self.critic_loss(batch, params),
            actor=self.actor_loss(batch, params),
        )

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One Adam step on the summed value, critic and actor losses, then the Polyak target update."""
        return step.with_target_critic(self, batch)
