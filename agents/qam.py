"""QAM: Q-learning with Adjoint Matching (Li & Levine, ICLR 2026), following the authors' agents/qam.py
(ColinQiyangLi/qam), with its two variants as configs.

Three flows over the flat chunk: the BC flow (`actor_slow`, flow matching on dataset chunks, with a Polyak
target copy), the fine-tuned flow (`actor_fast`) and the critic ensemble. The fine-tuned flow is trained by
adjoint matching (agents/adjoint.py): a memoryless SDE rolled out with the fine-tuned flow, the lean adjoint
started at -inv_temp * dQ/da (the target critic, at the clipped final action) and carried back through the
target BC flow, and the regression of the fine flow's control onto it at every step. The critic bootstraps
from the agent's own policy with the pessimistic target mean - rho * std over 10 critics.
Acting is the fine-tuned flow's ODE (the BC flow's where inv_temp = 0), as in the authors' code.

QAM-F (fql_alpha > 0) adds a one-step policy mu(s, z) distilled from the fine-tuned flow while maximising Q
(FQL's actor on top of QAM), and acts with it. QAM-E (edit_scale > 0) adds EXPO's edit policy (agents/edit.py,
FEdit's too), a tanh-Gaussian on (s, a) whose sample, times edit_scale, is added to the fine-tuned flow's
action; it maximises Q with SAC's entropy term and automatic temperature (agents/tanh_gaussian.py).
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import optax

from agents import adjoint, step
from agents import critic as td
from agents import edit as edit_policy
from agents import tanh_gaussian as tg
from agents.config import AgentConfig, sweepable
from agents.flow import euler_sample, flow_matching_loss
from agents.networks import Critic, VectorField, apply_encoded, encode, example_observations


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """Defaults of the authors' get_config and experiments/reproduce.py (docs/defaults.md, QAM).

    inv_temp: the weight of Q in the fine-tuned flow's target exp(inv_temp * Q) p_BC. fql_alpha > 0 is QAM-F
    (the one-step policy's distillation weight), edit_scale > 0 is QAM-E (the edit's scale); at most one.
    Both are static: they decide which networks exist. clip_adj: the adjoint starts from Q at the clipped
    action. clip_grad: the global norm the whole gradient is clipped to (None: no clipping).
    """

    lr: float = sweepable(3e-4)
    tau: float = sweepable(0.005)
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    num_qs: int = 10
    rho: float | None = 0.5
    critic_layer_norm: bool = True
    actor_layer_norm: bool = False
    flow_steps: int = 10
    inv_temp: float = sweepable(0.3)
    fql_alpha: float = 0.0
    edit_scale: float = 0.0
    clip_adj: bool = True
    clip_grad: float | None = 1.0
    init_temperature: float = 1.0  # the edit policy's
    target_entropy_multiplier: float = 0.5  # the edit policy's target entropy: -0.5 * its output size
    PRESETS = {"debug": {"hidden_dims": (64, 64)}}  # sizes of preset=debug's tiny networks
    TAKES_RHO = True  # agents/critic.py `bootstrap`

    def __post_init__(self):
        if self.fql_alpha > 0 and self.edit_scale > 0:
            raise ValueError(
                f"QAM takes a one-step policy (fql_alpha > 0, QAM-F) or an edit policy (edit_scale > 0, "
                f"QAM-E), not both: got fql_alpha={self.fql_alpha}, edit_scale={self.edit_scale}"
            )


class Agent(step.TDAgent):
    """params: critic, actor_slow (the BC flow), actor_fast (the fine-tuned flow), and one_step (QAM-F) or
    edit and log_temperature (QAM-E)."""

    target_actor_slow: dict
    critic_net: Critic = flax.struct.field(pytree_node=False)
    flow_net: VectorField = flax.struct.field(pytree_node=False)
    edit_net: tg.TanhGaussianActor | None = flax.struct.field(pytree_node=False, default=None)

    @classmethod
    def create(cls, seed: int, obs_dim: int | tuple[int, ...], action_dim: int, config: Config) -> Agent:
        policy_dim = config.policy_dim(action_dim)
        critic_net = Critic(
            config.hidden_dims, config.num_qs, config.critic_layer_norm, encoder=config.encoder
        )
        flow_net = VectorField(config.hidden_dims, policy_dim, config.actor_layer_norm, config.encoder)
        edit_net = None
        if config.edit_scale > 0:
            config.require_state_vectors("QAM-E's edit policy (an MLP on the state and the action)", obs_dim)
            edit_net = edit_policy.network(config.hidden_dims, policy_dim)
        keys = jax.random.split(jax.random.PRNGKey(seed), 6)
        obs, act, times = example_observations(obs_dim), jnp.zeros((1, policy_dim)), jnp.zeros((1, 1))
        params = {
            "critic": critic_net.init(keys[1], obs, act),
            "actor_slow": flow_net.init(keys[2], obs, act, times),
            "actor_fast": flow_net.init(keys[3], obs, act, times),
        }
        if config.fql_alpha > 0:
            params["one_step"] = flow_net.init(keys[4], obs, act)
        if edit_net is not None:
            params.update(edit_policy.init(edit_net, keys[5], obs, act, config.init_temperature))
        optimizer = step.adam(config.lr)
        if config.clip_grad is not None:
            optimizer = step.clipped_adam(config.lr, config.clip_grad)
        return cls(
            rng=keys[0],
            action_dim=action_dim,
            target_actor_slow=jax.tree_util.tree_map(jnp.copy, params["actor_slow"]),
            critic_net=critic_net,
            flow_net=flow_net,
            edit_net=edit_net,
            **step.training_state(config, params, optimizer=optimizer),
        )

    @property
    def policy_dim(self) -> int:
        return self.config.policy_dim(self.action_dim)

    def velocity(self, flow_params: dict, encoded: jax.Array) -> adjoint.Velocity:
        """v(x, times) of the flow with `flow_params` on its features of the observations (networks.encode,
        (batch, features)), broadcast over the leading axes of x: every step reuses one encoding."""

        def velocity(x, times):
            features = jnp.broadcast_to(encoded, (*x.shape[:-2], *encoded.shape))
            return apply_encoded(self.flow_net, flow_params, features, x, times)

        return velocity

    def ode(self, flow_params: dict, encoded: jax.Array, noise: jax.Array) -> jax.Array:
        """The flow's clipped flow_steps-step Euler ODE from `noise` (batch, policy_dim)."""
        velocity = self.velocity(flow_params, encoded)
        return euler_sample(lambda _, x, t: velocity(x, t), encoded, noise, self.config.flow_steps)

    def act(self, params: dict, observations: jax.Array, noise: jax.Array, edit_noise: jax.Array | None):
        """The policy's flat clipped actions (batch, policy_dim) for standard normals `noise` (batch,
        policy_dim): the one-step policy (QAM-F), else the fine-tuned flow's ODE (the BC flow's where
        inv_temp = 0) plus, for QAM-E, edit_scale times the edit policy's sample for `edit_noise`, clipped
        again."""
        cfg = self.config
        if cfg.fql_alpha > 0:
            return jnp.clip(self.one_step(params["one_step"], observations, noise), -1.0, 1.0)

        # the BC flow's parameters where inv_temp = 0: a select, so that a vector of inv_temps runs one ODE
        flow_params = jax.tree_util.tree_map(
            lambda slow, fast: jnp.where(cfg.inv_temp == 0, slow, fast),
            params["actor_slow"],
            params["actor_fast"],
        )
        actions = self.ode(flow_params, encode(self.flow_net, flow_params, observations), noise)
        if self.edit_net is None:
            return actions
        edit, _ = edit_policy.sample(self.edit_net, params, observations, actions, edit_noise)
        return edit_policy.edited(actions, edit, cfg.edit_scale)

    def one_step(self, one_step_params: dict, observations: jax.Array, noise: jax.Array) -> jax.Array:
        """QAM-F's mu(s, z), unclipped: (batch, policy_dim)."""
        encoded = encode(self.flow_net, one_step_params, observations)
        return apply_encoded(self.flow_net, one_step_params, encoded, noise)

    def sample_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """Actions to execute open-loop: (batch, steps, action_dim), steps = chunk_length or 1.

        observations: (batch, obs_dim)
        """
        noise_key, edit_key = jax.random.split(key)
        shape = (observations.shape[0], self.policy_dim)
        edit_noise = jax.random.normal(edit_key, shape) if self.edit_net is not None else None
        actions = self.act(self.params, observations, jax.random.normal(noise_key, shape), edit_noise)
        return actions.reshape(observations.shape[0], -1, self.action_dim)

    def draw_noise(self, key: jax.Array, batch_size: int) -> dict:
        """All randomness of one update, drawn up front so the losses are plain functions of their inputs."""
        keys = jax.random.split(key, 9)
        shape = (batch_size, self.policy_dim)
        noise = {
            "next_actions": jax.random.normal(keys[0], shape),
            "flow_x0": jax.random.normal(keys[1], shape),
            "flow_times": jax.random.uniform(keys[2], (batch_size, 1)),
            "sde_x0": jax.random.normal(keys[3], shape),
            "sde_steps": jax.random.normal(keys[4], (self.config.flow_steps - 1, *shape)),
        }
        if self.config.fql_alpha > 0:
            noise["distill"] = jax.random.normal(keys[5], shape)
        if self.edit_net is not None:
            noise["next_edit"] = jax.random.normal(keys[6], shape)
            noise["edit_x0"] = jax.random.normal(keys[7], shape)
            noise["edit"] = jax.random.normal(keys[8], shape)
        return noise

    def encode_batch(self, params: dict, observations: jax.Array) -> dict:
        """Each network's features of the batch's observations, computed once per update and shared by every
        loss, Euler step and adjoint step that reads them (networks.encode)."""
        return {
            "critic": encode(self.critic_net, params["critic"], observations),
            "actor_slow": encode(self.flow_net, params["actor_slow"], observations),
            "actor_fast": encode(self.flow_net, params["actor_fast"], observations),
            "target_actor_slow": encode(self.flow_net, self.target_actor_slow, observations),
            "target_critic": encode(self.critic_net, self.target_critic, observations),
        }

    def critic_loss(self, batch: dict, params: dict, noise: dict, encoded: dict) -> tuple[jax.Array, dict]:
        """Chunk-level TD loss; the target bootstraps from the acting policy at s_{t+h} and the target
        critics' mean - rho * std."""
        cfg = self.config
        next_observations = batch["next_observations"][:, -1]
        next_actions = self.act(
            jax.lax.stop_gradient(params), next_observations, noise["next_actions"], noise.get("next_edit")
        )
        next_qs = self.critic_net.apply(self.target_critic, next_observations, next_actions)
        target = td.chunk_target(batch, td.bootstrap(next_qs, "mean", cfg.rho), cfg.discount)
        actions = td.critic_actions(batch["actions"], cfg.action_chunking)
        qs = apply_encoded(self.critic_net, params["critic"], encoded["critic"], actions)
        return td.regression(qs, target, batch["valid"])

    def flow_loss(self, batch: dict, params: dict, noise: dict, encoded: dict) -> tuple[jax.Array, dict]:
        """Flow matching of the BC flow on the dataset's chunk, each chunk weighted by valid[h-1] as the
        authors' code (not per step)."""
        targets = batch["actions"] if self.config.action_chunking else batch["actions"][:, :1]
        weights = jnp.broadcast_to(batch["valid"][:, -1:], targets.shape[:2])
        loss = flow_matching_loss(
            lambda features, x, t: apply_encoded(self.flow_net, params["actor_slow"], features, x, t),
            encoded["actor_slow"],
            targets,
            noise["flow_x0"],
            noise["flow_times"],
            weights,
        )
        return loss, {"bc_flow_loss": loss}

    def adjoint_loss(self, batch: dict, params: dict, noise: dict, encoded: dict) -> tuple[jax.Array, dict]:
        """Adjoint matching of the fine-tuned flow: the rollout and the adjoint use the current fine flow, the
        target BC flow and the target critic, none of which takes a gradient."""
        cfg = self.config
        fine = self.velocity(*jax.lax.stop_gradient((params["actor_fast"], encoded["actor_fast"])))
        base = self.velocity(self.target_actor_slow, encoded["target_actor_slow"])
        xs, times = adjoint.memoryless_rollout(
            fine, base, noise["sde_x0"], noise["sde_steps"], cfg.flow_steps
        )

        def q(actions):
            return apply_encoded(self.critic_net, self.target_critic, encoded["target_critic"], actions)

        terminal = adjoint.terminal_adjoint(q, xs[-1], cfg.inv_temp, cfg.clip_adj)
        adjoints = adjoint.lean_adjoint(base, xs, terminal, cfg.flow_steps)
        fine_velocities = self.velocity(params["actor_fast"], encoded["actor_fast"])(xs[:-1], times)
        loss = adjoint.adjoint_matching_loss(
            fine_velocities, base(xs[:-1], times), adjoints, times, cfg.flow_steps
        )
        magnitude = jnp.abs(terminal)
        return loss, {
            "adj_loss": loss,
            "adj_max": magnitude.max(),
            "adj_mean": magnitude.mean(),
            "adj_std": magnitude.std(),
        }

    def fine_flow_actions(self, params: dict, encoded: dict, noise: jax.Array) -> jax.Array:
        """The fine-tuned flow's clipped ODE actions (batch, policy_dim), no gradient: what QAM-F distils and
        QAM-E edits."""
        return self.ode(*jax.lax.stop_gradient((params["actor_fast"], encoded["actor_fast"])), noise)

    def q_value(self, params: dict, encoded: dict, actions: jax.Array) -> jax.Array:
        """mean_k Q_k(s, clip(a)) with the critic's current parameters as constants: (batch,)."""
        critic, features = jax.lax.stop_gradient((params["critic"], encoded["critic"]))
        return apply_encoded(self.critic_net, critic, features, jnp.clip(actions, -1.0, 1.0)).mean(axis=0)

    def one_step_loss(self, batch: dict, params: dict, noise: dict, encoded: dict) -> tuple[jax.Array, dict]:
        """QAM-F: fql_alpha * ||mu(s, z) - fine flow(s, z)||^2 - Q(s, clip(mu(s, z)))."""
        flow_actions = self.fine_flow_actions(params, encoded, noise["distill"])
        actions = self.one_step(params["one_step"], batch["observations"], noise["distill"])
        distill_loss = jnp.mean(jnp.square(flow_actions - actions))
        q_loss = -self.q_value(params, encoded, actions).mean()
        loss = q_loss + distill_loss * self.config.fql_alpha
        return loss, {"one_step_loss": loss, "distill_loss": distill_loss, "q_loss": q_loss}

    def edit_loss(self, batch: dict, params: dict, noise: dict, encoded: dict) -> tuple[jax.Array, dict]:
        """QAM-E: SAC on the edit (agents/edit.py `loss`), temperature * log pi(edit | s, a) -
        Q(s, clip(a + edit_scale * edit)), with a the fine-tuned flow's action, and the temperature's loss
        towards -0.5 * policy_dim nats."""
        cfg = self.config
        return edit_policy.loss(
            self.edit_net,
            params,
            batch["observations"],
            self.fine_flow_actions(params, encoded, noise["edit_x0"]),
            noise["edit"],
            cfg.edit_scale,
            lambda actions: self.q_value(params, encoded, actions),
            -cfg.target_entropy_multiplier * self.policy_dim,
        )

    def total_loss(self, params: dict, batch: dict, noise: dict) -> tuple[jax.Array, dict]:
        encoded = self.encode_batch(params, batch["observations"])
        losses = {
            "critic": self.critic_loss(batch, params, noise, encoded),
            "actor": self.flow_loss(batch, params, noise, encoded),
            "adjoint": self.adjoint_loss(batch, params, noise, encoded),
        }
        if self.config.fql_alpha > 0:
            losses["one_step"] = self.one_step_loss(batch, params, noise, encoded)
        if self.edit_net is not None:
            losses["edit"] = self.edit_loss(batch, params, noise, encoded)
        return step.sum_losses(**losses)

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One (clipped) Adam step on the summed losses, then the Polyak updates of the target critic and the
        target BC flow, both from the parameters before the step (the authors' `target_update`)."""
        target_actor_slow = optax.incremental_update(
            self.params["actor_slow"], self.target_actor_slow, self.config.tau
        )
        agent, info = step.with_target_critic(self, batch)
        return agent.replace(target_actor_slow=target_actor_slow), info
