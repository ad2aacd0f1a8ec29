"""BAM: a flow fine-tuned by backpropagation through its memoryless SDE, a baseline of QAM (Li & Levine 2026;
ColinQiyangLi/qam agents/bam.py, "basic adjoint matching").

Three networks over the flat chunk, as QAM's: the BC flow (`actor_slow`, flow matching on dataset chunks,
with a Polyak target copy), the fine-tuned flow (`actor_fast`) and the critic ensemble. Where QAM regresses
the fine flow onto a lean adjoint, BAM differentiates the rollout itself: the fine flow's memoryless SDE from
noise (agents/adjoint.py `memoryless_rollout`: K - 1 Euler-Maruyama steps, then one ODE step of the target
BC flow) is scored by the critics, and the loss

    -inv_temp * mean_b [mean_k Q_k - rho std_k Q_k](s, x_K) + sum_{i<K-1} 2 ||v_fine - v_base||^2 / sigma_i^2

takes its gradient through every step into the fine flow's parameters; the second term, the fine SDE's
control cost against the target BC flow, keeps the fine flow near the behaviour. The critic bootstraps from
the acting policy, the fine flow's ODE (the BC flow's where inv_temp = 0), with mean - rho * std over 10
target critics.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import optax

from agents import adjoint, step
from agents import critic as td
from agents.config import AgentConfig, sweepable
from agents.flow import flow_matching_loss, network_velocity, sample_flow
from agents.networks import Critic, VectorField, apply_encoded, encode, example_observations


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """Defaults: the authors' get_config (agents/bam.py) with reproduce.py's common values (10 critics,
    rho = 0.5, chunking on); configs/agent/bam.yaml holds the per-domain inv_temp.

    inv_temp: the weight of the critics' value against the control cost (0: act with the BC flow).
    clip_grad: the global norm the whole gradient is clipped to (None: no clipping).
    """

    TAKES_RHO = True  # its target and its actor's Q read rho
    lr: float = sweepable(3e-4)
    tau: float = sweepable(0.005)
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    num_qs: int = 10
    rho: float | None = 0.5  # mean - rho * std over the critics (critic.bootstrap); None: their mean
    critic_layer_norm: bool = True
    actor_layer_norm: bool = False
    flow_steps: int = 10
    inv_temp: float = sweepable(0.3)
    clip_grad: float | None = 1.0
    PRESETS = {"debug": {"hidden_dims": (64, 64)}}


class Agent(step.TDAgent):
    """params: critic, actor_slow (the BC flow), actor_fast (the fine-tuned flow)."""

    target_actor_slow: dict
    critic_net: Critic = flax.struct.field(pytree_node=False)
    flow_net: VectorField = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int | tuple[int, ...], action_dim: int, config: Config) -> Agent:
        policy_dim = config.policy_dim(action_dim)
        critic_net = Critic(
            config.hidden_dims, config.num_qs, config.critic_layer_norm, encoder=config.encoder
        )
        flow_net = VectorField(config.hidden_dims, policy_dim, config.actor_layer_norm, config.encoder)
        rng, critic_key, slow_key, fast_key = jax.random.split(jax.random.PRNGKey(seed), 4)
        obs, act, times = example_observations(obs_dim), jnp.zeros((1, policy_dim)), jnp.zeros((1, 1))
        params = {
            "critic": critic_net.init(critic_key, obs, act),
            "actor_slow": flow_net.init(slow_key, obs, act, times),
            "actor_fast": flow_net.init(fast_key, obs, act, times),
        }
        optimizer = step.adam(config.lr)
        if config.clip_grad is not None:
            optimizer = step.clipped_adam(config.lr, config.clip_grad)
        return cls(
            rng=rng,
            action_dim=action_dim,
            target_actor_slow=jax.tree_util.tree_map(jnp.copy, params["actor_slow"]),
            critic_net=critic_net,
            flow_net=flow_net,
            **step.training_state(config, params, optimizer=optimizer),
        )

    @property
    def policy_dim(self) -> int:
        return self.config.policy_dim(self.action_dim)

    def velocity(self, flow_params: dict, encoded: jax.Array) -> adjoint.Velocity:
        """v(x, times) of the flow with `flow_params` on its features of the batch (networks.encode)."""
        velocity = network_velocity(self.flow_net, flow_params)
        return lambda x, times: velocity(encoded, x, times)

    def act(self, params: dict, observations: jax.Array, noise: jax.Array) -> jax.Array:
        """The fine-tuned flow's clipped ODE actions (batch, policy_dim) from `noise` (batch, policy_dim), the
        BC flow's where inv_temp = 0 (a parameter select, so a vector of inv_temps runs one ODE)."""
        flow_params = jax.tree_util.tree_map(
            lambda slow, fast: jnp.where(self.config.inv_temp == 0, slow, fast),
            params["actor_slow"],
            params["actor_fast"],
        )
        return sample_flow(self.flow_net, flow_params, observations, noise, self.config.flow_steps)

    def sample_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """(batch, steps, action_dim), steps = chunk_length or 1; observations: (batch, obs_dim)."""
        noise = jax.random.normal(key, (observations.shape[0], self.policy_dim))
        return self.act(self.params, observations, noise).reshape(observations.shape[0], -1, self.action_dim)

    def draw_noise(self, key: jax.Array, batch_size: int) -> dict:
        """All randomness of one update, drawn up front so the losses are plain functions of their inputs."""
        keys = jax.random.split(key, 5)
        shape = (batch_size, self.policy_dim)
        return {
            "next_actions": jax.random.normal(keys[0], shape),
            "flow_x0": jax.random.normal(keys[1], shape),
            "flow_times": jax.random.uniform(keys[2], (batch_size, 1)),
            "sde_x0": jax.random.normal(keys[3], shape),
            "sde_steps": jax.random.normal(keys[4], (self.config.flow_steps - 1, *shape)),
        }

    def encode_batch(self, params: dict, observations: jax.Array) -> dict:
        """Each network's features of the batch's observations, once per update (networks.encode)."""
        return {
            "critic": encode(self.critic_net, params["critic"], observations),
            "actor_slow": encode(self.flow_net, params["actor_slow"], observations),
            "actor_fast": encode(self.flow_net, params["actor_fast"], observations),
            "target_actor_slow": encode(self.flow_net, self.target_actor_slow, observations),
        }

    def critic_loss(self, batch: dict, params: dict, noise: dict, encoded: dict) -> tuple[jax.Array, dict]:
        """Chunk-level TD loss; the target bootstraps from the acting policy at s_{t+h} and the target
        critics' mean - rho * std."""
        cfg = self.config
        next_observations = batch["next_observations"][:, -1]
        next_actions = self.act(jax.lax.stop_gradient(params), next_observations, noise["next_actions"])
        next_qs = self.critic_net.apply(self.target_critic, next_observations, next_actions)
        target = td.chunk_target(batch, td.bootstrap(next_qs, "mean", cfg.rho), cfg.discount)
        actions = td.critic_actions(batch["actions"], cfg.action_chunking)
        qs = apply_encoded(self.critic_net, params["critic"], encoded["critic"], actions)
        return td.regression(qs, target, batch["valid"])

    def flow_loss(self, batch: dict, params: dict, noise: dict, encoded: dict) -> tuple[jax.Array, dict]:
        """Flow matching of the BC flow on the dataset's chunk, each chunk weighted by valid[h-1]."""
        targets = batch["actions"] if self.config.action_chunking else batch["actions"][:, :1]
        weights = jnp.broadcast_to(batch["valid"][:, -1:], targets.shape[:2])
        loss = flow_matching_loss(
            network_velocity(self.flow_net, params["actor_slow"]),
            encoded["actor_slow"],
            targets,
            noise["flow_x0"],
            noise["flow_times"],
            weights,
        )
        return loss, {"bc_flow_loss": loss}

    def bam_loss(self, batch: dict, params: dict, noise: dict, encoded: dict) -> tuple[jax.Array, dict]:
        """-inv_temp * the critics' pessimistic value of the fine flow's SDE sample (unclipped, the online
        critics held fixed) plus the SDE's control cost against the target BC flow, summed over the K - 1
        stochastic steps without the step size h, as the authors; the gradient runs through every step."""
        cfg = self.config
        fine = self.velocity(params["actor_fast"], encoded["actor_fast"])
        base = self.velocity(self.target_actor_slow, encoded["target_actor_slow"])
        xs, times, fine_velocities = adjoint.memoryless_rollout(
            fine, base, noise["sde_x0"], noise["sde_steps"], cfg.flow_steps, with_velocities=True
        )
        base_velocities = jnp.stack([base(xs[i], times[i]) for i in range(cfg.flow_steps - 1)])
        squared = jnp.sum(jnp.square(fine_velocities - base_velocities), axis=-1, keepdims=True)
        control_cost = jnp.mean(jnp.sum(squared * 2 / adjoint.sigma(times[:-1], cfg.flow_steps) ** 2, axis=0))
        critic, features = jax.lax.stop_gradient((params["critic"], encoded["critic"]))
        qs = apply_encoded(self.critic_net, critic, features, xs[-1])
        q = td.bootstrap(qs, "mean", cfg.rho).mean()
        loss = -q * cfg.inv_temp + control_cost
        return loss, {"bam_loss": loss, "control_cost": control_cost, "q": q}

    def total_loss(self, params: dict, batch: dict, noise: dict) -> tuple[jax.Array, dict]:
        encoded = self.encode_batch(params, batch["observations"])
        return step.sum_losses(
            critic=self.critic_loss(batch, params, noise, encoded),
            actor=self.flow_loss(batch, params, noise, encoded),
            bam=self.bam_loss(batch, params, noise, encoded),
        )

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One (clipped) Adam step on the summed losses, then the Polyak updates of the target critic and the
        target BC flow, both from the parameters before the step (the authors' `target_update`)."""
        target_actor_slow = optax.incremental_update(
            self.params["actor_slow"], self.target_actor_slow, self.config.tau
        )
        agent, info = step.with_target_critic(self, batch)
        return agent.replace(target_actor_slow=target_actor_slow), info
