"""RADT: Return-Aligned Decision Transformer (Tanaka et al. 2025), its Decision Transformer ablation
(Chen et al. 2021) and Online-DT-style fine-tuning (Zheng, Zhang & Grover 2022).

A transformer reads a context window of K steps (returns-to-go R_t, states s_t, actions a_t) and predicts a_t
at the s_t token, trained offline by masked MSE of tanh(mean) against the dataset actions. RADT keeps the
returns in their own stream: state/action tokens cross-attend to the return tokens (SeqRA, gated) and every
LayerNorm is modulated by the step's return embedding (StepRA, adaLN-Zero). `return_alignment = False` is DT:
interleaved (R, s, a) tokens through causal GPT blocks.

Online (`online = True`), as in Online DT, the policy is a tanh-squashed Gaussian trained on whole
trajectories by -(log-likelihood + temperature * entropy), the temperature learned so that the entropy stays
near `target_entropy`. Offline, the log-std head is fitted by the same loss on stopped-gradient features and
mean, so the offline phase trains exactly RADT/DT while the online phase starts with an exploration noise
fitted to the data.

Unlike the transition agents, `sample_actions` takes a context window, not a batch of observations.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from agents import step
from agents.config import AgentConfig, sweepable

dense_init = nn.initializers.normal(stddev=0.02)
Dense = functools.partial(nn.Dense, kernel_init=dense_init)
ZeroDense = functools.partial(nn.Dense, kernel_init=nn.initializers.zeros)
# Dataset actions at the bounds of [-1, 1] have no preimage under tanh; the likelihood is taken just inside.
ACTION_EPS = 1e-4


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """Gym defaults of RADT (spec radt.md); eval_* and online settings are read by launch/engine/sequences.py.

    learnable_timestep_embedding: False embeds timesteps as RADT's official code does by default (a fixed
    sinusoidal table, then a linear layer); True learns a table, as DT's reference code does
    (configs/agent/dt.yaml sets it).
    """

    chunk_length: int = 1  # one action per policy query (the other code reads agent.chunk_length)
    action_chunking: bool = False
    return_alignment: bool = True  # false: the interleaved (R, s, a) Decision Transformer
    seq_ra: bool = True  # sequence-level return alignment: gated cross-attention to the return tokens
    step_ra: bool = True  # step-level return alignment: adaLN-Zero modulation (both ignored by DT)
    context_length: int = 20  # K steps per window
    num_layers: int = 3
    num_heads: int = 1
    embed_dim: int = 128
    dropout: float = 0.1
    lr: float = sweepable(1e-4)  # AdamW
    weight_decay: float = 1e-4
    warmup_steps: int = 10000  # linear warm-up of the learning rate
    grad_clip: float = 0.25  # global-norm gradient clipping
    max_timestep: int = 1001  # timestep embeddings: at least the longest dataset trajectory
    learnable_timestep_embedding: bool = False
    # returns-to-go are divided by this (OGBench returns are about -(steps to success))
    return_scale: float = 100.0
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    init_temperature: float = 0.1
    temperature_lr: float = 1e-4
    target_entropy: float | None = None  # Online DT's entropy target; null: -action_dim
    # the sweep of target returns spans these quantiles of dataset returns
    eval_target_quantiles: tuple[float, float] = (0.05, 0.95)
    eval_num_targets: int = 5
    eval_episodes_per_target: int = 2  # episodes per sweep target, for eval/return_alignment_error
    eval_target_return: float | None = None  # target of the eval/success episodes; null: the top of the sweep
    # Online DT's exploration target return; null: the eval success target
    online_target_return: float | None = None
    replay_trajectories: int = 1000  # online replay size in trajectories, seeded with the best offline ones
    PRESETS = {"debug": {"embed_dim": 32, "num_layers": 1}}  # sizes of preset=debug's tiny networks

    def __post_init__(self):
        def require(condition, setting, expected):
            if not condition:
                value = getattr(self, setting)
                raise ValueError(f"invalid setting agent.{setting}={value!r}: expected {expected}")

        require(self.chunk_length == 1, "chunk_length", "1 (RADT and DT act one step at a time)")
        require(not self.action_chunking, "action_chunking", "false (RADT and DT act one step at a time)")
        require(
            self.seq_ra or self.step_ra or not self.return_alignment,
            "return_alignment",
            "false when seq_ra and step_ra are both off (RADT would then never see the returns)",
        )
        require(self.embed_dim % self.num_heads == 0, "num_heads", f"a divisor of embed_dim={self.embed_dim}")
        require(self.warmup_steps >= 1, "warmup_steps", "an integer >= 1")
        require(self.context_length >= 1, "context_length", "an integer >= 1")
        require(self.max_timestep >= 1, "max_timestep", "an integer >= 1")
        require(self.replay_trajectories >= 1, "replay_trajectories", "an integer >= 1")
        require(self.eval_num_targets >= 1, "eval_num_targets", "an integer >= 1")
        require(self.eval_episodes_per_target >= 1, "eval_episodes_per_target", "an integer >= 1")
        low, high = self.eval_target_quantiles
        require(0.0 <= low <= high <= 1.0, "eval_target_quantiles", "[low, high] with 0 <= low <= high <= 1")


# ---- the network -------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head attention; q, k, v projections without bias, output projection with bias (as RADT).
    Dropout on the attention weights draws one mask entry per window, head, query and key, as PyTorch's
    dropout does (flax's default would share one mask across the windows and heads of a batch).

    mask: (batch, 1, queries, keys) bool, False hides a key from a query.
    """

    num_heads: int
    dropout: float

    @nn.compact
    def __call__(self, queries, keys, values, mask, deterministic: bool):
        dim = queries.shape[-1]
        project = functools.partial(
            nn.DenseGeneral, (self.num_heads, dim // self.num_heads), use_bias=False, kernel_init=dense_init
        )
        out = nn.dot_product_attention(
            project(name="query")(queries),
            project(name="key")(keys),
            project(name="value")(values),
            mask=mask,
            broadcast_dropout=False,
            dropout_rng=None if deterministic or not self.dropout else self.make_rng("dropout"),
            dropout_rate=self.dropout,
            deterministic=deterministic,
        )
        out = nn.DenseGeneral(dim, axis=(-2, -1), kernel_init=dense_init, name="out")(out)
        return nn.Dropout(self.dropout)(out, deterministic)


class FeedForward(nn.Module):
    dropout: float

    @nn.compact
    def __call__(self, x, deterministic: bool):
        dim = x.shape[-1]
        hidden = nn.gelu(Dense(4 * dim)(x), approximate=False)
        return nn.Dropout(self.dropout)(Dense(dim)(hidden), deterministic)


class Block(nn.Module):
    """One layer over tokens x: (batch, tokens, dim), tokens = steps * tokens per step.

    step_ra: post-norm; the LayerNorms have no affine parameters but a per-step scale and shift from
    Linear(SiLU(c_t)), zero-initialised (adaLN-Zero), shared by the tokens of step t. Otherwise pre-norm with
    affine LayerNorms, which with seq_ra off is the GPT block of DT. seq_ra: cross-attention from the tokens
    to the return stream c (keys LN(c + e), values LN(c)), step-level causal, with a zero-initialised gate
    alpha = Linear([y, x]) that enters as x <- (1 + alpha) * y + x.
    """

    num_heads: int
    dropout: float
    seq_ra: bool
    step_ra: bool

    @nn.compact
    def __call__(self, x, returns, time, self_mask, cross_mask, deterministic: bool):
        """returns (c), time (e): (batch, steps, dim); self_mask: (batch, 1, tokens, tokens);
        cross_mask: (batch, 1, tokens, steps)."""
        stages = (
            ("self_attention", "return_attention", "feed_forward")
            if self.seq_ra
            else ("self_attention", "feed_forward")
        )
        if self.step_ra:
            modulation = ZeroDense(2 * len(stages) * x.shape[-1], name="modulation")(nn.silu(returns))
            modulation = jnp.repeat(modulation, x.shape[1] // returns.shape[1], axis=1)
            modulation = jnp.split(modulation, 2 * len(stages), axis=-1)

        def norm(h, stage):
            if not self.step_ra:
                return nn.LayerNorm(name=f"norm_{stage}")(h)
            index = stages.index(stage)
            scale, shift = modulation[2 * index], modulation[2 * index + 1]
            normed = nn.LayerNorm(epsilon=1e-6, use_bias=False, use_scale=False, name=f"norm_{stage}")(h)
            return normed * (1.0 + scale) + shift

        def sublayer(h, stage, branch):
            """branch(inputs, residual) -> new stream; post-normed with StepRA, pre-normed otherwise."""
            return norm(branch(h, h), stage) if self.step_ra else branch(norm(h, stage), h)

        def self_attention(inputs, residual):
            attention = Attention(self.num_heads, self.dropout, name="self_attention")
            return residual + attention(inputs, inputs, inputs, self_mask, deterministic)

        def return_attention(inputs, residual):
            keys = nn.LayerNorm(name="norm_k")(returns + time)
            values = nn.LayerNorm(name="norm_v")(returns)
            attention = Attention(self.num_heads, self.dropout, name="return_attention")
            y = attention(inputs, keys, values, cross_mask, deterministic)
            alpha = ZeroDense(x.shape[-1], name="gate")(jnp.concatenate([y, residual], axis=-1))
            return (1.0 + alpha) * y + residual

        def feed_forward(inputs, residual):
            return residual + FeedForward(self.dropout, name="feed_forward")(inputs, deterministic)

        x = sublayer(x, "self_attention", self_attention)
        if self.seq_ra:
            x = sublayer(x, "return_attention", return_attention)
        return sublayer(x, "feed_forward", feed_forward)


def interleave(*streams):
    """(batch, steps, dim) streams -> (batch, steps * len(streams), dim), step-major."""
    stacked = jnp.stack(streams, axis=2)
    return stacked.reshape(stacked.shape[0], -1, stacked.shape[-1])


def attention_masks(valid, tokens_per_step: int):
    """Self mask (batch, 1, tokens, tokens): token-level causal, pad keys hidden. Cross mask
    (batch, 1, tokens, steps): a token of step t sees the returns of steps <= t, pad keys hidden.

    valid: (batch, steps) bool.
    """
    steps = valid.shape[1]
    token_valid = jnp.repeat(valid, tokens_per_step, axis=1)
    token_step = jnp.repeat(jnp.arange(steps), tokens_per_step)
    self_mask = nn.combine_masks(
        nn.make_causal_mask(token_valid, dtype=bool),
        nn.make_attention_mask(jnp.ones_like(token_valid), token_valid, dtype=bool),
    )
    cross_mask = nn.combine_masks(
        nn.make_attention_mask(token_step, jnp.arange(steps), jnp.greater_equal, dtype=bool)[None],
        nn.make_attention_mask(jnp.ones_like(token_valid), valid, dtype=bool),
    )
    return self_mask, cross_mask


def sinusoid_table(num_timesteps: int, dim: int) -> np.ndarray:
    """The fixed timestep table of RADT (and of the Transformer's positions): (num_timesteps, dim) float32
    with row t, column j = sin(t / 10000^(2 floor(j/2) / dim)) at even j and cos(...) at odd j. Built in
    float64 so that the large angles of late timesteps keep their precision."""
    angles = np.arange(num_timesteps)[:, None] / np.power(10000.0, 2 * (np.arange(dim) // 2) / dim)
    return np.where(np.arange(dim) % 2 == 0, np.sin(angles), np.cos(angles)).astype(np.float32)


class SequenceModel(nn.Module):
    """RADT (return_alignment) or DT: the pre-tanh action mean and the log-std at every state token."""

    action_dim: int
    embed_dim: int
    num_layers: int
    num_heads: int
    dropout: float
    max_timestep: int
    return_alignment: bool
    seq_ra: bool
    step_ra: bool
    log_std_min: float
    log_std_max: float
    learnable_timestep_embedding: bool

    @nn.compact
    def __call__(
        self,
        observations,
        actions,
        returns_to_go,
        timesteps,
        valid,
        deterministic: bool = True,
        detach_std: bool = False,
    ):
        """observations: (batch, steps, obs_dim), normalised; actions: (batch, steps, action_dim);
        returns_to_go: (batch, steps), scaled; timesteps: (batch, steps) int; valid: (batch, steps) bool.

        Returns mean, log_std: (batch, steps, action_dim); `detach_std` stops the log-std head's gradient into
        the transformer.
        """
        timesteps = jnp.clip(timesteps, 0, self.max_timestep - 1)
        if self.learnable_timestep_embedding:  # DT's reference
            embed = nn.Embed(self.max_timestep, self.embed_dim, embedding_init=dense_init, name="timestep")
            time = embed(timesteps)
        else:  # RADT's default: a fixed sinusoidal table, then a learned linear layer
            table = jnp.asarray(sinusoid_table(self.max_timestep, self.embed_dim))
            time = Dense(self.embed_dim, name="timestep")(table[timesteps])
        states = Dense(self.embed_dim, name="state")(observations) + time
        acts = Dense(self.embed_dim, name="action")(actions) + time
        returns = Dense(self.embed_dim, name="return")(returns_to_go[..., None])
        block = functools.partial(Block, self.num_heads, self.dropout)
        if self.return_alignment:
            tokens = interleave(states, acts)
            self_mask, cross_mask = attention_masks(valid, 2)
            for layer in range(self.num_layers):
                tokens = block(self.seq_ra, self.step_ra, name=f"block_{layer}")(
                    tokens, returns, time, self_mask, cross_mask, deterministic
                )
            features = tokens[:, 0::2]
        else:
            tokens = interleave(returns + time, states, acts)
            tokens = nn.Dropout(self.dropout)(nn.LayerNorm(name="embed_norm")(tokens), deterministic)
            self_mask, _ = attention_masks(valid, 3)
            for layer in range(self.num_layers):
                tokens = block(False, False, name=f"block_{layer}")(
                    tokens, None, None, self_mask, None, deterministic
                )
            features = nn.LayerNorm(name="final_norm")(tokens)[:, 1::3]
        mean = Dense(self.action_dim, name="mean")(features)
        raw_log_std = Dense(self.action_dim, name="log_std")(
            jax.lax.stop_gradient(features) if detach_std else features
        )
        width = self.log_std_max - self.log_std_min
        log_std = self.log_std_min + 0.5 * width * (jnp.tanh(raw_log_std) + 1.0)
        return mean, log_std


# ---- tanh-Gaussian policy ----------------------------------------------------------------------------------


def tanh_log_det(pre_tanh):
    """log(1 - tanh(u)^2), written stably."""
    return 2.0 * (jnp.log(2.0) - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh))


def tanh_gaussian_log_prob(pre_tanh, mean, log_std):
    """log-density of tanh(u) for u ~ N(mean, exp(log_std)^2), summed over the action axis."""
    log_prob = jax.scipy.stats.norm.logpdf(pre_tanh, mean, jnp.exp(log_std)) - tanh_log_det(pre_tanh)
    return log_prob.sum(-1)


def masked_mean(values, valid):
    """Mean of values (batch, steps) over the valid steps."""
    return (values * valid).sum() / jnp.maximum(valid.sum(), 1.0)


# ---- the agent ---------------------------------------------------------------------------------------------


@functools.cache
def make_optimizer(config: Config) -> optax.GradientTransformation:
    """AdamW with DT's linear warm-up, lr * min((step + 1) / warmup_steps, 1), after global-norm clipping, for
    the transformer and for the log-std head, each clipped on its own: offline, the head's likelihood
    gradients, often large, must not shrink the transformer's MSE step. Adam for the temperature.

    Cached, so that agents with equal configs share one optimizer and hence their static fields: jitted
    functions of an agent are then reused by the next agent (a resumed run) instead of traced again.
    """
    schedule = optax.linear_schedule(config.lr / config.warmup_steps, config.lr, config.warmup_steps - 1)

    def clipped_adamw():
        return optax.chain(
            optax.clip_by_global_norm(config.grad_clip),
            optax.adamw(schedule, weight_decay=config.weight_decay),
        )

    def labels(params):
        model = {name: "log_std" if name == "log_std" else "model" for name in params["model"]["params"]}
        return {"model": {"params": model}, "log_temperature": "temperature"}

    transforms = {
        "model": clipped_adamw(),
        "log_std": clipped_adamw(),
        "temperature": optax.adam(config.temperature_lr),
    }
    return optax.multi_transform(transforms, labels)


class Agent(flax.struct.PyTreeNode):
    """Immutable agent state; `update` and `sample_actions` are pure and jittable.

    params: {"model": transformer parameters, "log_temperature": ()}. obs_mean, obs_std: (obs_dim,) dataset
    statistics that normalise every state the model sees. `online` switches the update to the Online DT loss.
    """

    rng: jax.Array
    params: dict
    opt_state: optax.OptState
    obs_mean: jax.Array
    obs_std: jax.Array
    config: Config = flax.struct.field(pytree_node=False)
    action_dim: int = flax.struct.field(pytree_node=False)
    network: SequenceModel = flax.struct.field(pytree_node=False)
    optimizer: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    online: bool = flax.struct.field(pytree_node=False, default=False)
    batch_kind: ClassVar[str] = "trajectories"  # the engine samples context windows of whole trajectories

    @classmethod
    def create(cls, seed: int, obs_dim: int | tuple[int, ...], action_dim: int, config: Config) -> Agent:
        config.require_state_vectors("RADT/DT's sequence model", obs_dim)
        network = SequenceModel(
            action_dim,
            config.embed_dim,
            config.num_layers,
            config.num_heads,
            config.dropout,
            config.max_timestep,
            config.return_alignment,
            config.seq_ra,
            config.step_ra,
            config.log_std_min,
            config.log_std_max,
            config.learnable_timestep_embedding,
        )
        rng, init_key = jax.random.split(jax.random.PRNGKey(seed))
        steps = config.context_length
        model_params = jax.jit(network.init)(  # one compilation instead of one per eager op
            init_key,
            jnp.zeros((1, steps, obs_dim)),
            jnp.zeros((1, steps, action_dim)),
            jnp.zeros((1, steps)),
            jnp.zeros((1, steps), jnp.int32),
            jnp.ones((1, steps), bool),
        )
        params = {"model": model_params, "log_temperature": jnp.log(jnp.float32(config.init_temperature))}
        optimizer = make_optimizer(config)
        return cls(
            rng=rng,
            params=params,
            opt_state=jax.jit(optimizer.init)(params),
            obs_mean=jnp.zeros(obs_dim),
            obs_std=jnp.ones(obs_dim),
            config=config,
            action_dim=action_dim,
            network=network,
            optimizer=optimizer,
        )

    def with_statistics(self, obs_mean, obs_std) -> Agent:
        """The agent normalising states by the dataset's mean and std (obs_dim,)."""
        return self.replace(
            obs_mean=jnp.asarray(obs_mean, jnp.float32), obs_std=jnp.asarray(obs_std, jnp.float32)
        )

    @property
    def target_entropy(self) -> float:
        return -float(self.action_dim) if self.config.target_entropy is None else self.config.target_entropy

    def forward(
        self, params: dict, context: dict, dropout_key: jax.Array | None = None, detach_std: bool = False
    ):
        """The model on a context window (raw states and returns): mean, log_std (batch, steps, action_dim).

        context: observations (batch, steps, obs_dim), actions (batch, steps, action_dim), returns_to_go,
        timesteps, valid (batch, steps). Dropout is on when a `dropout_key` is given.
        """
        return self.network.apply(
            params["model"],
            (context["observations"] - self.obs_mean) / self.obs_std,
            context["actions"],
            context["returns_to_go"] / self.config.return_scale,
            context["timesteps"],
            context["valid"] > 0,
            deterministic=dropout_key is None,
            detach_std=detach_std,
            rngs={} if dropout_key is None else {"dropout": dropout_key},
        )

    def sample_actions(self, context: dict, key: jax.Array, stochastic: bool = False) -> jax.Array:
        """The action at the last valid step of each window: (batch, 1, action_dim).

        tanh(mean) for evaluation; a tanh-Gaussian sample when `stochastic` (online exploration).
        """
        mean, log_std = self.forward(self.params, context)
        last = (context["valid"].sum(-1).astype(jnp.int32) - 1)[:, None, None]
        mean = jnp.take_along_axis(mean, last, axis=1)
        if stochastic:
            log_std = jnp.take_along_axis(log_std, last, axis=1)
            mean = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        return jnp.tanh(mean)

    def draw_noise(self, key: jax.Array, batch_size: int, steps: int) -> dict:
        """All randomness of one update, drawn up front so the losses are plain functions of their inputs."""
        dropout_key, entropy_key = jax.random.split(key)
        shape = (batch_size, steps, self.action_dim)
        return {"dropout": dropout_key, "entropy": jax.random.normal(entropy_key, shape)}

    def action_loss(self, batch: dict, mean: jax.Array) -> tuple[jax.Array, dict]:
        """RADT/DT: MSE of tanh(mean) against the dataset actions on valid steps."""
        mse = masked_mean(jnp.square(jnp.tanh(mean) - batch["actions"]).mean(-1), batch["valid"])
        return mse, {"mse": mse}

    def policy_loss(self, batch: dict, mean, log_std, temperature, noise: dict) -> tuple[jax.Array, dict]:
        """Online DT: -(log-likelihood of the dataset actions + temperature * entropy) on valid steps; the
        entropy is estimated from one reparameterised sample per step (`noise["entropy"]`)."""
        valid = batch["valid"]
        actions = jnp.clip(batch["actions"], -1.0 + ACTION_EPS, 1.0 - ACTION_EPS)
        log_likelihood = masked_mean(tanh_gaussian_log_prob(jnp.arctanh(actions), mean, log_std), valid)
        sample = mean + jnp.exp(log_std) * noise["entropy"]
        entropy = -masked_mean(tanh_gaussian_log_prob(sample, mean, log_std), valid)
        loss = -(log_likelihood + temperature * entropy)
        return loss, {
            "policy_loss": loss,
            "log_likelihood": log_likelihood,
            "entropy": entropy,
            "std": masked_mean(jnp.exp(log_std).mean(-1), valid),
        }

    def temperature_loss(self, log_temperature, entropy) -> tuple[jax.Array, dict]:
        """Raises the temperature while the entropy is below target, lowers it above (entropy held fixed)."""
        temperature = jnp.exp(log_temperature)
        loss = temperature * jax.lax.stop_gradient(entropy - self.target_entropy)
        return loss, {"temperature": temperature, "temperature_loss": loss}

    def total_loss(self, params: dict, batch: dict, noise: dict) -> tuple[jax.Array, dict]:
        """Offline: MSE for the transformer and the policy loss for the log-std head alone. Online: the policy
        loss for everything. Plus the temperature loss."""
        mean, log_std = self.forward(params, batch, noise["dropout"], detach_std=not self.online)
        temperature = jax.lax.stop_gradient(jnp.exp(params["log_temperature"]))
        mse, info = self.action_loss(batch, mean)
        policy_mean = mean if self.online else jax.lax.stop_gradient(mean)
        policy_loss, policy_info = self.policy_loss(batch, policy_mean, log_std, temperature, noise)
        temperature_loss, temperature_info = self.temperature_loss(
            params["log_temperature"], policy_info["entropy"]
        )
        loss = (policy_loss if self.online else mse + policy_loss) + temperature_loss
        info.update(policy_info, **temperature_info, loss=loss)
        return loss, {f"actor/{k}": v for k, v in info.items()}

    def update(self, batch: dict) -> tuple[Agent, dict]:
        """One clipped AdamW step (linear warm-up) on the transformer and on the log-std head, each clipped on
        its own, and one Adam step on the temperature.

        batch: context windows from buffers.trajectories (observations (batch, steps, obs_dim), ...).
        """
        agent, grads, info = step.optimizer_step(self, batch, *batch["valid"].shape)
        transformer = {name: grad for name, grad in grads["model"]["params"].items() if name != "log_std"}
        info["grad/norm"] = optax.tree.norm(transformer)
        return agent, info
