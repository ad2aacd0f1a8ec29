"""IFQL: IQL's value and critic with a flow behaviour policy, acting by rejection sampling (Park et al. 2025).

The flow is fit to the dataset's actions by flow matching only; no policy network is trained against the
critic. To act, N flow samples are drawn per observation and the one the online critic (min over its
ensemble) scores highest is executed. The TD target bootstraps from V(s_{t+h}), so no samples are drawn in
the update. chunk_length = 1 is IFQL; action_chunking = False with chunk_length = 5 is IFQL-n (one-action
critic and flow, the 5-step return); chunk_length = 5 is QC-IFQL (critic, value and flow over the chunk,
the best chunk executed open loop).
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from agents import best_of_n as bon
from agents import iql, step
from agents.behavior import Flow
from agents.config import AgentConfig, sweepable
from agents.networks import Critic, Value, VectorField, example_observations


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """Defaults of FQL's agents/ifql.py get_config (spec, "IFQL"); q_agg reduces the ensemble for V's target
    and for scoring the N samples (FQL: min)."""

    chunk_length: int = 1
    lr: float = sweepable(3e-4)
    tau: float = sweepable(0.005)
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    num_qs: int = 2
    q_agg: str = "min"  # ensemble reduction for V's target and for scoring the N samples (FQL: min)
    critic_layer_norm: bool = True  # value and critic
    actor_layer_norm: bool = False  # the flow's MLP
    expectile: float = sweepable(0.9)  # paper D.3 and FQL, every domain
    num_samples: int = 32  # N flow samples per action (paper D.3 and FQL, every domain)
    flow_steps: int = 10  # Euler steps per flow sample (paper Tab. 3)
    PRESETS = {"debug": {"hidden_dims": (64, 64)}}  # sizes of preset=debug's tiny networks

    def __post_init__(self):
        for name in ("num_samples", "flow_steps"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"invalid agent setting {name}={value!r}: expected an integer >= 1")


class Agent(step.TDAgent):
    critic_net: Critic = flax.struct.field(pytree_node=False)
    value_net: Value = flax.struct.field(pytree_node=False)
    behavior: Flow = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int | tuple[int, ...], action_dim: int, config: Config) -> Agent:
        policy_dim = config.policy_dim(action_dim)
        critic_net = Critic(
            config.hidden_dims, config.num_qs, config.critic_layer_norm, encoder=config.encoder
        )
        value_net = Value(config.hidden_dims, config.critic_layer_norm, config.encoder)
        behavior = Flow(
            VectorField(config.hidden_dims, policy_dim, config.actor_layer_norm, config.encoder),
            config.flow_steps,
        )
        rng, critic_key, value_key, behavior_key = jax.random.split(jax.random.PRNGKey(seed), 4)
        obs, act = example_observations(obs_dim), jnp.zeros((1, policy_dim))
        params = {
            "critic": critic_net.init(critic_key, obs, act),
            "value": value_net.init(value_key, obs),
            "behavior": behavior.init(behavior_key, obs, act),
        }
        return cls(
            rng=rng,
            action_dim=action_dim,
            critic_net=critic_net,
            value_net=value_net,
            behavior=behavior,
            **step.training_state(config, params),
        )

    @property
    def policy_dim(self) -> int:
        return self.config.policy_dim(self.action_dim)

    def sample_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """The best of N flow samples under the online critic, executed open loop: (batch, steps,
        action_dim). The same in rollouts and evaluation (FQL's IFQL ignores the temperature).

        observations: (batch, obs_dim)
        """
        cfg = self.config
        noise = self.behavior.sampling_noise(key, (observations.shape[0], cfg.num_samples))
        chunks = bon.candidates(self.behavior, self.params["behavior"], observations, noise, cfg.num_samples)
        actions = bon.best(self.critic_net, self.params["critic"], observations, chunks, cfg.q_agg)
        return actions.reshape(observations.shape[0], -1, self.action_dim)

    def draw_noise(self, key: jax.Array, batch_size: int) -> dict:
        """The flow-matching noise of one update; the TD target needs none."""
        return self.behavior.draw_noise(key, batch_size)

    value_loss = iql.value_loss
    critic_loss = iql.critic_loss

    def behavior_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """Flow matching on the dataset's chunks weighted per step by `valid` (IFQL-n: the first action)."""
        if self.config.action_chunking:
            targets, weights = batch["actions"], batch["valid"]
        else:
            targets, weights = batch["actions"][:, :1], None
        loss = self.behavior.loss(params["behavior"], batch["observations"], targets, noise, weights)
        return loss, {"bc_flow_loss": loss}

    def total_loss(self, params: dict, batch: dict, noise: dict) -> tuple[jax.Array, dict]:
        return step.sum_losses(
            value=self.value_loss(batch, params),
            critic=self.critic_loss(batch, params),
            actor=self.behavior_loss(batch, params, noise),
        )

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One Adam step on the summed value, critic and flow losses, then the Polyak target update."""
        return step.with_target_critic(self, batch)
