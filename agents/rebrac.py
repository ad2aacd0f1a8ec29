"""ReBRAC: TD3+BC with layer-normed critics and separate actor and critic penalties (Tarasov et al. 2023;
Park et al. 2025's agents/rebrac.py; QAM's chunked form, ColinQiyangLi/qam agents/rebrac.py).

A deterministic tanh policy maximises Q(s, pi(s)) / stopgrad(mean |Q|) - alpha_actor * ||pi(s) - a||^2, Q the
ensemble's q_agg (FQL: min), or mean - rho * std where rho is set (QAM).
The critic bootstraps from the target actor's smoothed action a' = clip(pi_bar(s') + clip(N(0, 0.2^2), +-0.5),
+-1) and pays alpha_critic * ||a' - a'_data||^2, a'_data being the dataset's next action. The actor loss and
both target networks update on every second step only (TD3's delay, agents/step.py); `delay_actor = False`
gives the actor a gradient on every step and delays the targets only, as QAM's ReBRAC runs. The dataset's
next action comes from the shared chunk sampler: ReBRAC samples chunk_length + 1 transitions
(`Config.sample_length`) and the last one's action is a'_data.

On chunks (action_chunking with chunk_length > 1, QAM's manipulation runs) the policy and the critic read
the flattened chunk, there is no critic penalty (alpha_critic = 0: QAM's ReBRAC has none) and the sampler
gives the chunk alone; the BC term counts a chunk only where it ends in its episode (valid[h-1]).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import flax.struct
import jax
import jax.numpy as jnp

from agents import critic as td
from agents import step
from agents.config import AgentConfig, sweepable
from agents.networks import Actor, Critic, example_observations

# keys of a chunk batch with a time axis after the batch axis (buffers/chunks.py)
TIME_KEYS = ("actions", "rewards", "masks", "terminals", "valid", "next_observations")


def split_next_actions(batch: dict) -> tuple[dict, jax.Array, jax.Array]:
    """A batch of chunk_length + 1 transitions -> the chunk of its first chunk_length, the dataset's action
    at s_{t+h} (batch, action_dim) and whether that action belongs to the chunk's episode (batch,)."""
    chunk = {key: value[:, :-1] if key in TIME_KEYS else value for key, value in batch.items()}
    return chunk, batch["actions"][:, -1], batch["valid"][:, -1]


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """Defaults of FQL's agents/rebrac.py get_config (spec, "ReBRAC"); q_agg reduces the ensemble for the
    target and the actor (FQL: min), rho (when set) replaces it by mean - rho * std in both (QAM). With
    chunk_length > 1, action_chunking = True needs alpha_critic = 0 (QAM's ReBRAC; the penalty would need the
    dataset's next chunk); action_chunking = False is an n-step return.

    alpha_actor: the paper (Tab. 4, D.3) gives one coefficient, 0.1 on every domain, swept over 0.01-1. FQL's
    ReBRAC takes two (alpha_actor, alpha_critic, both 0 by default) and its README tunes them per env. We read
    the paper's 0.1 as the actor's BC coefficient, ReBRAC's (and TD3+BC's) main knob, and keep FQL's
    alpha_critic = 0: unconfirmed by the paper.
    """

    chunk_length: int = 1
    lr: float = sweepable(3e-4)
    tau: float = sweepable(0.005)  # Polyak rate of the target critic and the target actor
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    num_qs: int = 2
    q_agg: str = "min"  # ensemble reduction for the target and the actor's Q (FQL: min of 2)
    critic_layer_norm: bool = True
    actor_layer_norm: bool = False
    actor_final_init_scale: float = 0.01  # FQL actor_fc_scale: the tanh policy starts near 0
    alpha_actor: float = sweepable(0.1)  # weight of ||pi(s) - a||^2 in the actor loss
    alpha_critic: float = sweepable(0.0)  # weight of ||a' - a'_data||^2 subtracted from the target Q
    actor_freq: int = 2  # target (and delayed actor) updates every 2nd update (TD3's delay)
    delay_actor: bool = True  # the actor loss too only every actor_freq-th update (FQL); QAM's ReBRAC: false
    actor_noise: float = 0.2  # std of the target-policy smoothing and exploration noise
    actor_noise_clip: float = 0.5
    PRESETS = {"debug": {"hidden_dims": (64, 64)}}  # sizes of preset=debug's tiny networks
    TAKES_RHO = True  # agents/critic.py `bootstrap`

    def __post_init__(self):
        if not self.reads_next_action and self.alpha_critic != 0:
            raise ValueError(
                f"invalid agent settings action_chunking=true with chunk_length={self.chunk_length}: "
                f"ReBRAC's critic penalty (alpha_critic={self.alpha_critic}) needs the dataset's next chunk, "
                "which the sampler does not give; expected alpha_critic=0 (QAM's chunked ReBRAC), "
                "chunk_length=1 or action_chunking=false (the n-step return)"
            )

    @property
    def reads_next_action(self) -> bool:
        """Whether a sample ends with the dataset's next action a'_data (one action or an n-step return); a
        chunked ReBRAC has no critic penalty and samples the chunk alone."""
        return not (self.action_chunking and self.chunk_length > 1)

    @property
    def sample_length(self) -> int:
        return self.chunk_length + 1 if self.reads_next_action else self.chunk_length


class Agent(step.TDAgent):
    """step: updates so far (the targets, and with `delay_actor` the actor, move on every `actor_freq`-th)."""

    # its target reads the next observation of step chunk_length - 1 of chunk_length + 1 (split_next_actions);
    # a chunked ReBRAC reads the last, as other TD agents (the same numbers)
    reads_every_next_observation: ClassVar[bool] = True

    step: jax.Array
    target_actor: Any
    critic_net: Critic = flax.struct.field(pytree_node=False)
    actor_net: Actor = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int | tuple[int, ...], action_dim: int, config: Config) -> Agent:
        policy_dim = config.policy_dim(action_dim)
        critic_net = Critic(
            config.hidden_dims, config.num_qs, config.critic_layer_norm, encoder=config.encoder
        )
        actor_net = Actor(
            config.hidden_dims,
            policy_dim,
            config.actor_layer_norm,
            config.actor_final_init_scale,
            config.encoder,
        )
        rng, critic_key, actor_key = jax.random.split(jax.random.PRNGKey(seed), 3)
        obs = example_observations(obs_dim)
        params = {
            "critic": critic_net.init(critic_key, obs, jnp.zeros((1, policy_dim))),
            "actor": actor_net.init(actor_key, obs),
        }
        return cls(
            rng=rng,
            step=jnp.zeros((), jnp.int32),
            target_actor=jax.tree_util.tree_map(jnp.copy, params["actor"]),
            action_dim=action_dim,
            critic_net=critic_net,
            actor_net=actor_net,
            **step.training_state(config, params),
        )

    @property
    def policy_dim(self) -> int:
        return self.config.policy_dim(self.action_dim)

    def policy(self, actor_params: dict, observations: jax.Array) -> jax.Array:
        """tanh of the actor's output (the mode of FQL's tanh-Gaussian): (batch, policy_dim), a flat chunk
        when chunking."""
        return jnp.tanh(self.actor_net.apply(actor_params, observations))

    def smoothed(self, actions: jax.Array, noise: jax.Array, scale) -> jax.Array:
        """clip(actions + clip(scale * noise, +-actor_noise_clip), +-1), noise ~ N(0, I)."""
        cfg = self.config
        return jnp.clip(actions + jnp.clip(scale * noise, -cfg.actor_noise_clip, cfg.actor_noise_clip), -1, 1)

    def sample_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """Exploration (temperature 1): the mode plus clipped N(0, actor_noise^2) on every coordinate of the
        chunk: (batch, steps, action_dim), steps = chunk_length when chunking, else 1."""
        modes = self.policy(self.params["actor"], observations)
        actions = self.smoothed(modes, jax.random.normal(key, modes.shape), self.config.actor_noise)
        return actions.reshape(observations.shape[0], -1, self.action_dim)

    def eval_actions(self, observations: jax.Array, key: jax.Array) -> jax.Array:
        """Evaluation (temperature 0): the mode, (batch, steps, action_dim)."""
        modes = self.policy(self.params["actor"], observations)
        return modes.reshape(observations.shape[0], -1, self.action_dim)

    def draw_noise(self, key: jax.Array, batch_size: int) -> jax.Array:
        """The target-policy smoothing noise of one update, N(0, I): (batch, policy_dim)."""
        return jax.random.normal(key, (batch_size, self.policy_dim))

    def split(self, batch: dict) -> tuple[dict, jax.Array | None, jax.Array | None]:
        """The sampled batch -> (the chunk, a'_data, whether a'_data is of the chunk's episode); the last two
        None on chunks, whose sample holds the chunk alone (`Config.reads_next_action`)."""
        if self.config.reads_next_action:
            return split_next_actions(batch)
        return batch, None, None

    def critic_loss(self, batch: dict, params: dict, noise: jax.Array) -> tuple[jax.Array, dict]:
        """TD loss towards rewards[h-1] + gamma^h * masks[h-1] * (Q_bar(s', a') - alpha_critic * ||a' -
        a'_data||^2) with a' the target actor's smoothed action (a flat chunk when chunking); the penalty
        counts only where a'_data is of the chunk's episode, and a chunked ReBRAC has none. `batch` holds
        `Config.sample_length` transitions."""
        cfg = self.config
        chunk, data_next_actions, next_valid = self.split(batch)
        next_observations = chunk["next_observations"][:, -1]
        next_actions = self.smoothed(
            self.policy(self.target_actor, next_observations), noise, cfg.actor_noise
        )
        next_qs = self.critic_net.apply(self.target_critic, next_observations, next_actions)
        next_q = td.bootstrap(next_qs, cfg.q_agg, cfg.rho)
        metrics = {}
        if data_next_actions is not None:
            penalty = jnp.square(next_actions - data_next_actions).sum(-1) * next_valid
            next_q = next_q - cfg.alpha_critic * penalty
            metrics["next_action_mse"] = penalty.mean()
        target = td.chunk_target(chunk, next_q, cfg.discount)
        actions = td.critic_actions(chunk["actions"], cfg.action_chunking)
        qs = self.critic_net.apply(params["critic"], chunk["observations"], actions)
        loss, info = td.regression(qs, target, chunk["valid"])
        return loss, {**info, **metrics}

    def actor_loss(self, batch: dict, params: dict) -> tuple[jax.Array, dict]:
        """-Q(s, pi(s)) / stopgrad(mean |Q|) + alpha_actor * ||pi(s) - a||^2, both means over the batch; Q the
        online ensemble's q_agg, or mean - rho * std where rho is set (QAM's ReBRAC), and a the dataset's
        first action, or its flattened chunk weighted by valid[h-1] when chunking (QAM)."""
        cfg = self.config
        chunk, _, _ = self.split(batch)
        observations = chunk["observations"]
        actions = self.policy(params["actor"], observations)
        qs = self.critic_net.apply(jax.lax.stop_gradient(params["critic"]), observations, actions)
        q = td.bootstrap(qs, cfg.q_agg, cfg.rho)
        q_loss = -(q / jax.lax.stop_gradient(jnp.abs(q).mean())).mean()
        mse = jnp.square(actions - td.critic_actions(chunk["actions"], cfg.action_chunking)).sum(-1)
        # a chunk that crosses its episode's end is no target; one action always counts
        if cfg.action_chunking:
            mse = mse * chunk["valid"][:, -1]
        bc_loss = cfg.alpha_actor * mse.mean()
        loss = q_loss + bc_loss
        return loss, {
            "actor_loss": loss,
            "q_loss": q_loss,
            "bc_loss": bc_loss,
            "q": q.mean(),
            "mse": mse.mean(),
        }

    def total_loss(self, params: dict, batch: dict, noise: jax.Array) -> tuple[jax.Array, dict]:
        """Critic loss, plus the actor loss on TD3's delayed steps only (a zero gradient elsewhere, as in FQL,
        where the skipped steps still step Adam's moments), or on every step without `delay_actor` (QAM's
        ReBRAC: its second `update` shadows the first and calls `total_loss` with full_update left True, so
        main.py's `full_update=(i % actor_freq == 0)` reaches the target updates only)."""
        actor, actor_info = self.actor_loss(batch, params)
        if self.config.delay_actor:
            actor = jnp.where(step.is_delayed_step(self.step, self.config.actor_freq), actor, 0.0)
        return step.sum_losses(critic=self.critic_loss(batch, params, noise), actor=(actor, actor_info))

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One Adam step, then the Polyak update of both targets on the delayed steps (agents/step.py)."""
        return step.with_delayed_targets(self, batch, self.config.actor_freq)
