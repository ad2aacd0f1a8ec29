"""DQC: decoupled Q-chunking (Li, Park & Levine 2025; spec dqc.md).

Q-chunking ties the critic's backup horizon to the policy's chunk. DQC unties them: a chunk critic
Q_H(s, a_{t..t+H-1}) backs values up over a long chunk (H = chunk_length, 25), a distilled action critic
Q_A(s, a_{t..t+h_a-1}) scores the short policy chunk (h_a = policy_chunk_length, 5) by an implicit
maximisation (expectile or quantile) of Q_H over the actions after it, and a value V(s) is an implicit
maximisation of Q_A over the data's policy chunks; V at the end of the long chunk is the chunk critic's
bootstrap. There is no policy network: a flow behaviour model over policy chunks proposes N candidates and
Q_A picks one (best-of-N, as QC). Every loss is summed into one Adam step; only Q_A has a target copy.

Two settings (`value_type`):
  reach  (the paper): offline goal-conditioned RL on OGBench's oraclerep tasks. Observations are the state
         followed by the goal's oracle representation (`goal_dim` trailing entries); the critics and V see
         both, the behaviour model the state only. Values are discounted reach probabilities: the networks
         output logits, values are their sigmoid, regression is binary cross-entropy and the quantile loss
         acts on logits. The goal sampler (buffers/goals.py) supplies the chunk's reward, backup length,
         mask and bootstrap state.
  return (our extension, "DQC offline-to-online"): the single-task reward setting QC uses. The target is the
         usual H-step chunk target (agents/critic.py) and values are raw returns, so the losses are squared
         (chunk critic), asymmetric-squared (expectile) or asymmetric-absolute (quantile) on raw values.
The ablations are settings of this one agent: QC (use_chunk_critic = false, H = h_a = 5), NS (H = 25,
h_a = 1, no chunk critic) and OS (H = h_a = 1).
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from agents import behavior as bm
from agents import best_of_n as bon
from agents import critic as td
from agents import step
from agents.config import AgentConfig, sweepable
from agents.networks import Critic, VectorField, example_observations

VALUE_TYPES = ("reach", "return")
ASYMMETRIC_LOSSES = ("expectile", "quantile")
# Reach values are clipped to [EPS, 1 - EPS] before taking their logit (the reference clips the distillation
# target so; the value backup's target gets the same clip so that a saturated sigmoid cannot give an inf).
EPS = 1e-5
DISCOUNTS = {"reach": 0.999, "return": 0.99}


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """chunk_length = H, the chunk critic's backup horizon and the length of the sampled chunk;
    policy_chunk_length = h_a, the actions per policy query, the first h_a of the same sampled chunk.

    value_type None: 'reach' when goal_dim > 0 (a goal-conditioned env), else 'return'. discount None:
    0.999 for reach (the paper), 0.99 for return (the single-task protocol's). Defaults are the paper's
    DQC on cube-quadruple (configs/agent/dqc.yaml sets the per-domain kappas and q_agg).
    """

    chunk_length: int = 25  # H: the chunk critic's backup horizon, the length of every sampled chunk
    policy_chunk_length: int = 5  # h_a: actions per policy query, the first h_a of the sampled chunk
    # null: 0.999 for reach (the paper), 0.99 for return (the single-task protocol)
    discount: float | None = sweepable(None)
    value_type: str | None = None  # reach | return; null: reach when goal_dim > 0, else return
    goal_dim: int = 0
    # false: no Q_H, Q_A regresses the H-step target itself (the QC/NS/OS ablations)
    use_chunk_critic: bool = True
    kappa_b: float = sweepable(0.93)
    kappa_d: float = sweepable(0.8)
    distill_method: str = "expectile"  # expectile | quantile
    implicit_backup_type: str = "quantile"  # expectile | quantile
    q_agg: str = "min"
    num_samples: int = 32  # N of best-of-N
    flow_steps: int = 10  # Euler steps per flow sample
    hidden_dims: tuple[int, ...] = (1024, 1024, 1024, 1024)  # every MLP (critics, value, behaviour flow)
    critic_layer_norm: bool = True
    actor_layer_norm: bool = True
    lr: float = sweepable(3e-4)
    tau: float = sweepable(0.005)  # Polyak rate of the target action critic
    num_qs: int = 2
    PRESETS = {"debug": {"hidden_dims": (64, 64)}}  # sizes of preset=debug's tiny networks

    def __post_init__(self):
        # frozen: the derived defaults are written once, here, so every reader sees the resolved values
        if self.value_type is None:
            object.__setattr__(self, "value_type", "reach" if self.goal_dim > 0 else "return")
        if self.discount is None:
            object.__setattr__(self, "discount", DISCOUNTS.get(self.value_type, 0.99))
        choices = {
            "value_type": VALUE_TYPES,
            "distill_method": ASYMMETRIC_LOSSES,
            "implicit_backup_type": ASYMMETRIC_LOSSES,
            "q_agg": ("mean", "min"),
            "action_chunking": (True,),
        }
        for name, valid in choices.items():
            value = getattr(self, name)
            if value not in valid:
                raise ValueError(f"invalid agent setting {name}={value!r}: expected one of {valid}")
        for name in ("chunk_length", "policy_chunk_length", "num_samples", "flow_steps", "num_qs"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"invalid agent setting {name}={value!r}: expected an integer >= 1")
        if self.policy_chunk_length > self.chunk_length:
            raise ValueError(
                f"invalid agent setting policy_chunk_length={self.policy_chunk_length}: expected at most "
                f"chunk_length={self.chunk_length} (the policy chunk is the start of the critic's chunk)"
            )
        if self.value_type == "reach" and self.goal_dim < 1:
            raise ValueError(
                f"invalid agent setting value_type='reach' with goal_dim={self.goal_dim}: reach values need "
                "a goal-conditioned env (env.goal_dim > 0, e.g. env=cube_double_oraclerep)"
            )
        for name in ("kappa_b", "kappa_d"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"invalid agent setting {name}={value!r}: expected a number in (0, 1)")

    def policy_dim(self, action_dim: int) -> int:
        """One flat policy chunk: h_a actions."""
        return action_dim * self.policy_chunk_length


def bce(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Binary cross-entropy of sigmoid(logits) against targets in [0, 1], elementwise."""
    return -(targets * jax.nn.log_sigmoid(logits) + (1.0 - targets) * jax.nn.log_sigmoid(-logits))


def logit(probabilities: jax.Array) -> jax.Array:
    clipped = jnp.clip(probabilities, EPS, 1.0 - EPS)
    return jnp.log(clipped) - jnp.log1p(-clipped)


def asymmetric_loss(
    outputs: jax.Array, targets: jax.Array, kappa: float, method: str, value_type: str, weights: jax.Array
) -> jax.Array:
    """Mean of w * loss(outputs, targets) * weights, w = kappa where the target is at least the prediction,
    else 1 - kappa: an expectile (method 'expectile') or quantile ('quantile') of the targets, which is the
    implicit maximisation of DQC's distillation and value backup.

    reach: outputs are logits and targets values in [0, 1]; expectile = w * BCE, quantile = w * |logit
    difference|. return: raw values; expectile = w * squared error, quantile = w * absolute error.
    outputs, targets: broadcastable, batch last; weights: (batch,)
    """
    targets = jax.lax.stop_gradient(targets)
    predictions = jax.nn.sigmoid(outputs) if value_type == "reach" else outputs
    w = jnp.where(targets >= predictions, kappa, 1.0 - kappa)
    if value_type == "reach":
        error = bce(outputs, targets) if method == "expectile" else jnp.abs(outputs - logit(targets))
    else:
        error = jnp.square(outputs - targets) if method == "expectile" else jnp.abs(outputs - targets)
    return (w * error * weights).mean()


def values_of(outputs: jax.Array, value_type: str) -> jax.Array:
    """What the networks' outputs mean as values: sigmoid of logits (reach) or themselves (return)."""
    return jax.nn.sigmoid(outputs) if value_type == "reach" else outputs


class Agent(step.TDAgent):
    chunk_critic_net: Critic = flax.struct.field(pytree_node=False)
    action_critic_net: Critic = flax.struct.field(pytree_node=False)
    value_net: Critic = flax.struct.field(pytree_node=False)
    behavior: bm.Flow = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int | tuple[int, ...], action_dim: int, config: Config) -> Agent:
        """obs_dim counts the goal: the state's entries followed by config.goal_dim goal entries; an image
        shape (h, w, c) has no goal entries."""
        if isinstance(obs_dim, int) and obs_dim <= config.goal_dim:
            raise ValueError(f"obs_dim={obs_dim} must exceed goal_dim={config.goal_dim} (state then goal)")
        if not isinstance(obs_dim, int) and config.goal_dim:
            raise ValueError(f"goal_dim={config.goal_dim} needs state observations, not images {obs_dim}")
        policy_dim = config.policy_dim(action_dim)
        critic = Critic(config.hidden_dims, config.num_qs, config.critic_layer_norm, encoder=config.encoder)
        # V(s, g): no action input
        value_net = Critic(config.hidden_dims, 1, config.critic_layer_norm, encoder=config.encoder)
        behavior = bm.Flow(
            VectorField(config.hidden_dims, policy_dim, config.actor_layer_norm, config.encoder),
            config.flow_steps,
        )
        rng, *keys = jax.random.split(jax.random.PRNGKey(seed), 5)
        obs = example_observations(obs_dim)
        params = {
            "action_critic": critic.init(keys[0], obs, jnp.zeros((1, policy_dim))),
            "value": value_net.init(keys[1], obs, jnp.zeros((1, 0))),
            "behavior": behavior.init(
                keys[2], obs[..., : obs.shape[-1] - config.goal_dim], jnp.zeros((1, policy_dim))
            ),
        }
        if config.use_chunk_critic:
            params["chunk_critic"] = critic.init(
                keys[3], obs, jnp.zeros((1, config.chunk_length * action_dim))
            )
        return cls(
            rng=rng,
            action_dim=action_dim,
            chunk_critic_net=critic,
            action_critic_net=critic,
            value_net=value_net,
            behavior=behavior,
            **step.training_state(config, params, target="action_critic"),
        )

    # ---- inputs --------------------------------------------------------------------------------------------

    def states(self, observations: jax.Array) -> jax.Array:
        """The behaviour model's input: observations without their trailing goal entries."""
        return observations[..., : observations.shape[-1] - self.config.goal_dim]

    def policy_chunk(self, actions: jax.Array) -> jax.Array:
        """The first h_a actions of the sampled chunk, flat: (batch, chunk_length, action_dim) -> (batch,
        policy_dim)."""
        return actions[:, : self.config.policy_chunk_length].reshape(actions.shape[0], -1)

    def policy_valid(self, batch: dict) -> jax.Array:
        """valid[h_a - 1]: the policy chunk lies in one episode; weights every loss on the policy chunk."""
        return batch["valid"][:, self.config.policy_chunk_length - 1]

    def value(self, params: dict, observations: jax.Array) -> jax.Array:
        """V's output (logit or raw value): (batch,)."""
        return self.value_net.apply(params, observations, jnp.zeros((observations.shape[0], 0)))[0]

    # ---- acting --------------------------------------------------------------------------------------------

    def best_of_n(self, params: dict, observations: jax.Array, noise: jax.Array) -> jax.Array:
        """Of num_samples behaviour chunks (state only), the one Q_A(s, g, .) scores highest (ensemble reduced
        by q_agg on the outputs, as the reference): (batch, policy_dim).

        observations: (batch, obs_dim); noise: (batch, num_samples, policy_dim)
        """
        cfg = self.config
        states = self.states(observations)
        chunks = bon.candidates(self.behavior, params["behavior"], states, noise, cfg.num_samples)
        return bon.best(self.action_critic_net, params["action_critic"], observations, chunks, cfg.q_agg)

    def sample_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """The policy chunk to execute: (batch, policy_chunk_length, action_dim).

        observations: (batch, obs_dim), the goal's entries last in the reach setting
        """
        noise = self.behavior.sampling_noise(key, (observations.shape[0], self.config.num_samples))
        actions = self.best_of_n(self.params, observations, noise)
        return actions.reshape(observations.shape[0], -1, self.action_dim)

    # ---- losses --------------------------------------------------------------------------------------------

    def backup_target(self, batch: dict, params: dict) -> jax.Array:
        """y = r + gamma^n * mask * V(s_{t+n}) under the current V (no gradient): (batch,).

        reach: the goal sampler's backup_rewards (gamma^n * success), backup_lengths n, backup_masks and
        backup_observations s_{t+n} (with the goal); y is clipped to [0, 1]. return: the chunk's H-step
        target, rewards[H-1] + gamma^H * masks[H-1] * V(next_observations[H-1]) (agents/critic.py).
        """
        cfg = self.config
        value_params = jax.lax.stop_gradient(params["value"])
        if cfg.value_type == "reach":
            next_v = jax.nn.sigmoid(self.value(value_params, batch["backup_observations"]))
            discounts = cfg.discount ** batch["backup_lengths"].astype(jnp.float32)
            target = batch["backup_rewards"] + discounts * batch["backup_masks"] * next_v
            return jnp.clip(target, 0.0, 1.0)
        next_v = self.value(value_params, batch["next_observations"][:, -1])
        return td.chunk_target(batch, next_v, cfg.discount)

    def chunk_critic_loss(self, batch: dict, params: dict) -> tuple[jax.Array, dict]:
        """Q_H on the whole sampled chunk regressed to y: BCE (reach) or the squared error weighted by
        valid[H-1] like every chunked critic here (return)."""
        target = self.backup_target(batch, params)
        actions = batch["actions"].reshape(batch["actions"].shape[0], -1)
        outputs = self.chunk_critic_net.apply(params["chunk_critic"], batch["observations"], actions)
        if self.config.value_type == "reach":
            loss = bce(outputs, jax.lax.stop_gradient(target)).mean()
        else:
            loss = td.critic_loss(outputs, target, batch["valid"])
        qs = values_of(outputs, self.config.value_type)
        return loss, {"critic_loss": loss, "q_mean": qs.mean(), "q_max": qs.max(), "q_min": qs.min()}

    def action_critic_loss(self, batch: dict, params: dict) -> tuple[jax.Array, dict]:
        """Q_A on the policy chunk, an implicit maximum (kappa_d, distill_method) of its target: Q_H's value
        of the whole chunk, member by member (use_chunk_critic), else y (an n-step critic on the short
        chunk)."""
        cfg = self.config
        observations = batch["observations"]
        if cfg.use_chunk_critic:
            actions = batch["actions"].reshape(batch["actions"].shape[0], -1)
            chunk = self.chunk_critic_net.apply(params["chunk_critic"], observations, actions)
            target = values_of(jax.lax.stop_gradient(chunk), cfg.value_type)
        else:
            target = self.backup_target(batch, params)
        outputs = self.action_critic_net.apply(
            params["action_critic"], observations, self.policy_chunk(batch["actions"])
        )
        loss = asymmetric_loss(
            outputs, target, cfg.kappa_d, cfg.distill_method, cfg.value_type, self.policy_valid(batch)
        )
        qs = values_of(outputs, cfg.value_type)
        return loss, {"critic_loss": loss, "q_mean": qs.mean(), "q_max": qs.max(), "q_min": qs.min()}

    def value_loss(self, batch: dict, params: dict) -> tuple[jax.Array, dict]:
        """V, an implicit maximum (kappa_b, implicit_backup_type) over the data's policy chunks of the target
        Q_A's value (ensemble reduced by q_agg after the sigmoid)."""
        cfg = self.config
        observations = batch["observations"]
        target_qs = self.action_critic_net.apply(
            self.target_critic, observations, self.policy_chunk(batch["actions"])
        )
        q = td.aggregate(values_of(target_qs, cfg.value_type), cfg.q_agg)
        outputs = self.value(params["value"], observations)
        loss = asymmetric_loss(
            outputs, q, cfg.kappa_b, cfg.implicit_backup_type, cfg.value_type, self.policy_valid(batch)
        )
        v = values_of(outputs, cfg.value_type)
        return loss, {
            "value_loss": loss,
            "v_mean": v.mean(),
            "v_max": v.max(),
            "v_min": v.min(),
            "adv": (q - v).mean(),
        }

    def behavior_loss(self, batch: dict, params: dict, noise: dict) -> tuple[jax.Array, dict]:
        """Flow matching on the data's policy chunk from the state alone, weighted by valid[h_a - 1]."""
        h_a = self.config.policy_chunk_length
        weights = jnp.broadcast_to(self.policy_valid(batch)[:, None], (batch["actions"].shape[0], h_a))
        loss = self.behavior.loss(
            params["behavior"], self.states(batch["observations"]), batch["actions"][:, :h_a], noise, weights
        )
        return loss, {"bc_flow_loss": loss}

    def draw_noise(self, key: jax.Array, batch_size: int) -> dict:
        return self.behavior.draw_noise(key, batch_size)

    def total_loss(self, params: dict, batch: dict, noise: dict) -> tuple[jax.Array, dict]:
        losses = {
            "action_critic": self.action_critic_loss(batch, params),
            "value": self.value_loss(batch, params),
            "actor": self.behavior_loss(batch, params, noise),
        }
        if self.config.use_chunk_critic:
            losses["chunk_critic"] = self.chunk_critic_loss(batch, params)
        return step.sum_losses(**losses)

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One Adam step on the summed losses, then the Polyak update of the target action critic."""
        return step.with_target_critic(self, batch, "action_critic")
