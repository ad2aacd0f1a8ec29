"""DSRL: diffusion steering by RL over the flow's initial noise (Wagenmaker et al. 2025), a baseline of QAM
(Li & Levine 2026; ColinQiyangLi/qam agents/dsrl.py).

A BC flow v(s, x, u) over chunks is fit by flow matching and left as it is; RL acts on its input instead. A
noise policy, a tanh-Gaussian on s scaled by noise_scale, picks the flow's initial noise z, and the executed
chunk is the (target) flow's clipped Euler ODE from z. Three critics:
- the action critic Q(s, a), 10 members, trained by the chunked TD target that bootstraps from the whole
  policy at s_{t+h} (noise policy, then flow) with mean - rho * std over the target critics;
- the noise critic Q_z(s, z), distilled from the action critic: each member regresses on its action
  critic's Q(s, flow(s, z)) at z ~ N(0, I);
- the noise policy maximises mean_k Q_z(s, z) with SAC's entropy term and automatic temperature
  (agents/tanh_gaussian.py).
"""

from __future__ import annotations

import dataclasses
import math

import flax.struct
import jax
import jax.numpy as jnp
import optax

from agents import critic as td
from agents import step
from agents import tanh_gaussian as tg
from agents.config import AgentConfig, sweepable
from agents.flow import flow_matching_loss, network_velocity, sample_flow
from agents.networks import Critic, VectorField, apply_encoded, encode, example_observations


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """Defaults: the authors' get_config (agents/dsrl.py) with reproduce.py's common values (10 critics,
    rho = 0.5, chunking on); configs/agent/dsrl.yaml holds the per-domain noise_scale.

    noise_scale: the noise policy's tanh sample is multiplied by it before it enters the flow.
    use_target_latent: the flow that maps noise to chunks (acting, the TD target, the distillation) is the
    Polyak copy of the BC flow (the authors' default), else the BC flow itself.
    """

    TAKES_RHO = True  # its target reads rho
    lr: float = sweepable(3e-4)
    tau: float = sweepable(0.005)  # target critic and target BC flow
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    num_qs: int = 10  # action critic and noise critic alike
    q_agg: str = "mean"  # the target's reduction where rho is None
    rho: float | None = 0.5  # mean - rho * std over the target critics (critic.bootstrap); None: q_agg
    critic_layer_norm: bool = True  # action and noise critics (the authors' value_layer_norm)
    actor_layer_norm: bool = False  # the BC flow's; the noise policy has none (the authors' TanhNormal)
    flow_steps: int = 10
    noise_scale: float = sweepable(1.0)
    init_temperature: float = 1.0
    target_entropy_multiplier: float = 0.5  # target entropy: -0.5 * policy_dim
    use_target_latent: bool = True
    PRESETS = {"debug": {"hidden_dims": (64, 64)}}


class Agent(step.TDAgent):
    """params: critic, noise_critic, bc_flow, noise_actor (a tanh_gaussian.TanhGaussianActor),
    log_temperature (a scalar)."""

    target_bc_flow: dict
    critic_net: Critic = flax.struct.field(pytree_node=False)  # the action critic and the noise critic
    flow_net: VectorField = flax.struct.field(pytree_node=False)
    noise_actor_net: tg.TanhGaussianActor = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int | tuple[int, ...], action_dim: int, config: Config) -> Agent:
        policy_dim = config.policy_dim(action_dim)
        critic_net = Critic(
            config.hidden_dims, config.num_qs, config.critic_layer_norm, encoder=config.encoder
        )
        flow_net = VectorField(config.hidden_dims, policy_dim, config.actor_layer_norm, config.encoder)
        noise_actor_net = tg.TanhGaussianActor(
            config.hidden_dims, policy_dim, encoder=config.encoder, rlpd_style=False
        )
        keys = jax.random.split(jax.random.PRNGKey(seed), 5)
        obs, act = example_observations(obs_dim), jnp.zeros((1, policy_dim))
        params = {
            "critic": critic_net.init(keys[1], obs, act),
            "noise_critic": critic_net.init(keys[2], obs, act),
            "bc_flow": flow_net.init(keys[3], obs, act, jnp.zeros((1, 1))),
            "noise_actor": noise_actor_net.init(keys[4], obs),
            "log_temperature": jnp.asarray(math.log(config.init_temperature), jnp.float32),
        }
        return cls(
            rng=keys[0],
            action_dim=action_dim,
            target_bc_flow=jax.tree_util.tree_map(jnp.copy, params["bc_flow"]),
            critic_net=critic_net,
            flow_net=flow_net,
            noise_actor_net=noise_actor_net,
            **step.training_state(config, params),
        )

    @property
    def policy_dim(self) -> int:
        return self.config.policy_dim(self.action_dim)

    def latent_flow(self, params: dict) -> dict:
        """The parameters of the flow that maps noise to chunks."""
        return self.target_bc_flow if self.config.use_target_latent else params["bc_flow"]

    def flow_actions(self, flow_params: dict, observations: jax.Array, noise: jax.Array) -> jax.Array:
        """The flow's clipped Euler ODE from `noise` (batch, policy_dim)."""
        return sample_flow(self.flow_net, flow_params, observations, noise, self.config.flow_steps)

    def noise_policy(self, actor_params: dict, observations: jax.Array, noise: jax.Array):
        """The flow noise noise_scale * tanh(mu(s) + std(s) * noise) (batch, policy_dim), reparameterised in
        standard normals `noise`, its log-probability before the scaling (batch,) and the Gaussian's stds."""
        encoded = encode(self.noise_actor_net, actor_params, observations)
        means, log_stds = tg.distribution(self.noise_actor_net, actor_params, encoded)
        latent, log_probs = tg.sample(means, log_stds, noise)
        return latent * self.config.noise_scale, log_probs, jnp.exp(log_stds)

    def act(self, params: dict, observations: jax.Array, noise: jax.Array) -> jax.Array:
        """The policy's flat clipped chunks (batch, policy_dim): the flow from the noise policy's sample."""
        latent, _, _ = self.noise_policy(params["noise_actor"], observations, noise)
        return self.flow_actions(self.latent_flow(params), observations, latent)

    def sample_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """(batch, steps, action_dim), steps = chunk_length or 1; observations: (batch, obs_dim). Stochastic,
        as the authors act and evaluate."""
        noise = jax.random.normal(key, (observations.shape[0], self.policy_dim))
        return self.act(self.params, observations, noise).reshape(observations.shape[0], -1, self.action_dim)

    def draw_noise(self, key: jax.Array, batch_size: int) -> dict:
        """All randomness of one update, drawn up front so the losses are plain functions of their inputs."""
        keys = jax.random.split(key, 5)
        shape = (batch_size, self.policy_dim)
        return {
            "next_actions": jax.random.normal(keys[0], shape),  # the noise policy's, at s_{t+h}
            "distill": jax.random.normal(keys[1], shape),  # z ~ N(0, I) of the noise critic's regression
            "flow_x0": jax.random.normal(keys[2], shape),
            "flow_times": jax.random.uniform(keys[3], (batch_size, 1)),
            "noise_actor": jax.random.normal(keys[4], shape),
        }

    def critic_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """TD of the action critic plus the noise critic's distillation
        mean_k,b (Q_z,k(s, z) - Q_k(s, flow(s, z)))^2, the action critic held fixed, no valid weight."""
        cfg = self.config
        frozen = jax.lax.stop_gradient(params)
        next_observations = batch["next_observations"][:, -1]
        next_actions = self.act(frozen, next_observations, noise["next_actions"])
        next_qs = self.critic_net.apply(self.target_critic, next_observations, next_actions)
        target = td.chunk_target(batch, td.bootstrap(next_qs, cfg.q_agg, cfg.rho), cfg.discount)
        observations = batch["observations"]
        features = encode(self.critic_net, params["critic"], observations)
        actions = td.critic_actions(batch["actions"], cfg.action_chunking)
        qs = apply_encoded(self.critic_net, params["critic"], features, actions)
        critic_loss, info = td.regression(qs, target, batch["valid"])

        flow_actions = self.flow_actions(self.latent_flow(frozen), observations, noise["distill"])
        target_qs = apply_encoded(
            self.critic_net, frozen["critic"], jax.lax.stop_gradient(features), flow_actions
        )
        noise_qs = self.critic_net.apply(params["noise_critic"], observations, noise["distill"])
        distill_loss = jnp.square(noise_qs - target_qs).mean()
        return critic_loss + distill_loss, {**info, "distill_loss": distill_loss}

    def actor_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """Flow matching of the BC flow (one weight per chunk, valid[h-1], as the authors) plus SAC on the
        noise policy, temperature * log pi(z|s) - mean_k Q_z,k(s, z), the noise critic and temperature held
        fixed."""
        cfg = self.config
        observations = batch["observations"]
        targets = batch["actions"] if cfg.action_chunking else batch["actions"][:, :1]
        bc_flow_loss = flow_matching_loss(
            network_velocity(self.flow_net, params["bc_flow"]),
            encode(self.flow_net, params["bc_flow"], observations),
            targets,
            noise["flow_x0"],
            noise["flow_times"],
            jnp.broadcast_to(batch["valid"][:, -1:], targets.shape[:2]),
        )
        latent, log_probs, stds = self.noise_policy(params["noise_actor"], observations, noise["noise_actor"])
        noise_critic = jax.lax.stop_gradient(params["noise_critic"])
        q = self.critic_net.apply(noise_critic, observations, latent).mean(axis=0)
        temperature = jnp.exp(jax.lax.stop_gradient(params["log_temperature"]))
        noise_actor_loss = (temperature * log_probs - q).mean()
        return bc_flow_loss + noise_actor_loss, {
            "bc_flow_loss": bc_flow_loss,
            "actor_loss": noise_actor_loss,
            "entropy": -log_probs.mean(),
            "action_std": stds.mean(),
            "q": q.mean(),
        }

    def temperature_loss(self, params: dict, entropy: jax.Array) -> tuple[jax.Array, dict]:
        target = -self.config.target_entropy_multiplier * self.policy_dim
        return tg.temperature_loss(params["log_temperature"], entropy, target)

    def total_loss(self, params: dict, batch: dict, noise: dict) -> tuple[jax.Array, dict]:
        critic = self.critic_loss(batch, params, noise)
        actor = self.actor_loss(batch, params, noise)
        temperature = self.temperature_loss(params, actor[1]["entropy"])
        return step.sum_losses(critic=critic, actor=actor, temperature=temperature)

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One Adam step on the summed losses, then the Polyak updates of the target critic and the target BC
        flow, both from the parameters before the step (the authors' `target_update`)."""
        tau = self.config.tau
        target_bc_flow = optax.incremental_update(self.params["bc_flow"], self.target_bc_flow, tau)
        agent, info = step.with_target_critic(self, batch)
        return agent.replace(target_bc_flow=target_bc_flow), info
