"""FEdit: a behaviour flow with EXPO's edit policy on top, a baseline of QAM (Li & Levine 2026;
ColinQiyangLi/qam agents/fedit.py, after Dong et al. 2025, EXPO).

A BC flow v(s, x, u) over chunks is fit by flow matching on dataset chunks and never sees Q. The edit policy
(agents/edit.py, QAM-E's too) is a tanh-Gaussian on (s, a): the executed chunk is clip(a + edit_scale * edit)
for a the flow's clipped Euler chunk, and the edit maximises Q of that chunk with SAC's entropy term and
automatic temperature. Acting draws best_of_n such edited chunks and keeps the one the online critics' mean
scores highest (1 in every published run: no selection). The chunked critic bootstraps from the same acting
policy at s_{t+h}, mean - rho * std over 10 target critics (`critic.bootstrap`).
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from agents import best_of_n, step
from agents import critic as td
from agents import edit as edit_policy
from agents import tanh_gaussian as tg
from agents.behavior import normal
from agents.config import AgentConfig, sweepable
from agents.flow import euler_sample, flow_matching_loss, network_velocity, sample_flow
from agents.networks import Critic, VectorField, encode, example_observations


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """Defaults: the authors' get_config (agents/fedit.py) with reproduce.py's common values (10 critics,
    rho = 0.5, chunking on); configs/qam_method/fedit.yaml holds the per-domain edit_scale.

    edit_scale: the edit's scale (0, get_config's, leaves the flow's action as it is). best_of_n: edited
    chunks drawn per decision and per target, the best by the online critics' mean kept. The edit policy's
    temperature starts at init_temperature and is tuned towards -target_entropy_multiplier * policy_dim nats.
    """

    TAKES_RHO = True  # its target reads rho
    lr: float = sweepable(3e-4)
    tau: float = sweepable(0.005)
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    num_qs: int = 10
    rho: float | None = 0.5  # mean - rho * std over the target critics (critic.bootstrap)
    critic_layer_norm: bool = True
    actor_layer_norm: bool = False
    flow_steps: int = 10
    best_of_n: int = 1
    edit_scale: float = sweepable(0.0)
    init_temperature: float = 1.0  # the authors' LogParam init_value
    target_entropy_multiplier: float = 0.5
    PRESETS = {"debug": {"hidden_dims": (64, 64)}}

    def __post_init__(self):
        if self.best_of_n < 1:
            raise ValueError(f"agent.best_of_n must be at least 1, got {self.best_of_n}")


class Agent(step.TDAgent):
    """params: critic, actor_bc_flow (the BC flow), edit and log_temperature (the edit policy's)."""

    critic_net: Critic = flax.struct.field(pytree_node=False)
    flow_net: VectorField = flax.struct.field(pytree_node=False)
    edit_net: tg.TanhGaussianActor = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int | tuple[int, ...], action_dim: int, config: Config) -> Agent:
        config.require_state_vectors("FEdit's edit policy (an MLP on the state and the action)", obs_dim)
        policy_dim = config.policy_dim(action_dim)
        critic_net = Critic(config.hidden_dims, config.num_qs, config.critic_layer_norm)
        flow_net = VectorField(config.hidden_dims, policy_dim, config.actor_layer_norm)
        edit_net = edit_policy.network(config.hidden_dims, policy_dim)
        rng, critic_key, flow_key, edit_key = jax.random.split(jax.random.PRNGKey(seed), 4)
        obs, act = example_observations(obs_dim), jnp.zeros((1, policy_dim))
        params = {
            "critic": critic_net.init(critic_key, obs, act),
            "actor_bc_flow": flow_net.init(flow_key, obs, act, jnp.zeros((1, 1))),
            **edit_policy.init(edit_net, edit_key, obs, act, config.init_temperature),
        }
        return cls(
            rng=rng,
            action_dim=action_dim,
            critic_net=critic_net,
            flow_net=flow_net,
            edit_net=edit_net,
            **step.training_state(config, params),
        )

    @property
    def policy_dim(self) -> int:
        return self.config.policy_dim(self.action_dim)

    def act(self, params: dict, observations: jax.Array, noise: jax.Array, edit_noise: jax.Array):
        """The acting policy's flat chunks (batch, policy_dim): for each of best_of_n flow noises and edit
        noises (standard normals, each (batch, best_of_n, policy_dim)) the flow's clipped Euler chunk, edited
        and clipped again; of these, the one with the highest mean over the online critics."""
        cfg = self.config
        flow = params["actor_bc_flow"]
        features = best_of_n.repeat(encode(self.flow_net, flow, observations), cfg.best_of_n)
        actions = euler_sample(network_velocity(self.flow_net, flow), features, noise, cfg.flow_steps)
        repeated = best_of_n.repeat(observations, cfg.best_of_n)
        edit, _ = edit_policy.sample(self.edit_net, params, repeated, actions, edit_noise)
        actions = edit_policy.edited(actions, edit, cfg.edit_scale)
        if cfg.best_of_n == 1:  # the argmax of one candidate: skip the critic
            return actions[:, 0]
        return best_of_n.best(self.critic_net, params["critic"], observations, actions, "mean")

    def sample_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """Actions to execute open-loop: (batch, steps, action_dim), steps = chunk_length or 1.

        observations: (batch, obs_dim)
        """
        noise_key, edit_key = jax.random.split(key)
        shape = (observations.shape[0], self.config.best_of_n, self.policy_dim)
        actions = self.act(self.params, observations, normal(noise_key, shape), normal(edit_key, shape))
        return actions.reshape(observations.shape[0], -1, self.action_dim)

    def draw_noise(self, key: jax.Array, batch_size: int) -> dict:
        """All randomness of one update, drawn up front so the losses are plain functions of their inputs."""
        keys = jax.random.split(key, 6)
        candidates = (batch_size, self.config.best_of_n, self.policy_dim)
        shape = (batch_size, self.policy_dim)
        return {
            "next_actions": normal(keys[0], candidates),
            "next_edit": normal(keys[1], candidates),
            "flow_x0": jax.random.normal(keys[2], shape),
            "flow_times": jax.random.uniform(keys[3], (batch_size, 1)),
            "edit_x0": jax.random.normal(keys[4], shape),
            "edit": jax.random.normal(keys[5], shape),
        }

    def critic_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """Chunk-level TD loss; the target bootstraps from the acting policy (flow, edit, best-of-N by the
        online critics) at s_{t+h} and the target critics' mean - rho * std."""
        cfg = self.config
        next_observations = batch["next_observations"][:, -1]
        next_actions = self.act(
            jax.lax.stop_gradient(params), next_observations, noise["next_actions"], noise["next_edit"]
        )
        next_qs = self.critic_net.apply(self.target_critic, next_observations, next_actions)
        target = td.chunk_target(batch, td.bootstrap(next_qs, "mean", cfg.rho), cfg.discount)
        actions = td.critic_actions(batch["actions"], cfg.action_chunking)
        qs = self.critic_net.apply(params["critic"], batch["observations"], actions)
        return td.regression(qs, target, batch["valid"])

    def flow_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """Flow matching of the BC flow on the dataset's chunk, each chunk weighted by valid[h-1] as the
        authors' code (not per step)."""
        targets = batch["actions"] if self.config.action_chunking else batch["actions"][:, :1]
        weights = jnp.broadcast_to(batch["valid"][:, -1:], targets.shape[:2])
        flow = params["actor_bc_flow"]
        loss = flow_matching_loss(
            network_velocity(self.flow_net, flow),
            encode(self.flow_net, flow, batch["observations"]),
            targets,
            noise["flow_x0"],
            noise["flow_times"],
            weights,
        )
        return loss, {"bc_flow_loss": loss}

    def edit_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """SAC on the edit of the BC flow's chunk (agents/edit.py `loss`); the flow and the critics are held
        fixed, the critics read at the edited, clipped chunk."""
        cfg = self.config
        observations = batch["observations"]
        flow = jax.lax.stop_gradient(params["actor_bc_flow"])
        flow_actions = sample_flow(self.flow_net, flow, observations, noise["edit_x0"], cfg.flow_steps)
        critic = jax.lax.stop_gradient(params["critic"])
        return edit_policy.loss(
            self.edit_net,
            params,
            observations,
            flow_actions,
            noise["edit"],
            cfg.edit_scale,
            lambda actions: self.critic_net.apply(critic, observations, actions).mean(axis=0),
            -cfg.target_entropy_multiplier * self.policy_dim,
        )

    def total_loss(self, params: dict, batch: dict, noise: dict) -> tuple[jax.Array, dict]:
        return step.sum_losses(
            critic=self.critic_loss(batch, params, noise),
            actor=self.flow_loss(batch, params, noise),
            edit=self.edit_loss(batch, params, noise),
        )

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One Adam step on the summed critic, flow and edit losses (no gradient clipping, as the authors'
        FEdit), then the Polyak update of the target critic from the parameters before the step."""
        return step.with_target_critic(self, batch)
