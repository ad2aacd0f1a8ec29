"""One update step, the part every agent shares; each agent's losses stay in its own file.

An agent brings `draw_noise(key, *shape) -> noise`, `total_loss(params, batch, noise) -> (loss, info)` and
the state of `TDAgent` (for a toy, just `rng`, `params`, `opt_state` and an optax `optimizer`). All randomness
of the update comes from a split of the agent's own rng, so a step is a pure function of (agent, batch) that
can be jitted, scanned over updates or vmapped over seeds.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import optax


@functools.cache
def adam(lr: float) -> optax.GradientTransformation:
    """Adam whose learning rate lives in the optimiser state (optax.inject_hyperparams), so runs of a vector
    with different `lr` stack into one pytree and each steps with its own. One instance per initial rate:
    agents of equal configs have equal static fields, and a jitted update is not traced again for a new
    agent (a resumed run)."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=lr)


@functools.cache
def clipped_adam(lr: float, max_norm: float) -> optax.GradientTransformation:
    """`adam(lr)` after scaling the whole gradient (every network's, summed losses) down to a global norm of
    at most `max_norm`, as QAM's optimizer (ColinQiyangLi/qam agents/qam.py `clip_grad`). Cached as `adam`."""
    return optax.chain(optax.clip_by_global_norm(max_norm), adam(lr))


class TDAgent(flax.struct.PyTreeNode):
    """The state every TD agent holds (`training_state` fills all but `rng` and `action_dim`); an agent adds
    its networks as static fields and keeps `update` and `sample_actions` pure and jittable."""

    batch_kind: ClassVar[str] = "chunks"  # what the engine samples for `update`: chunk batches
    # Whether `update` reads next_observations at every step of a chunk; a TD target reads the last only, and
    # the engine then samples that one alone (launch/engine/fused.py `reads_every_next`).
    reads_every_next_observation: ClassVar[bool] = False

    rng: jax.Array
    params: dict
    target_critic: Any
    opt_state: Any
    config: Any  # a pytree: its sweepable values are leaves (agents/config.py)
    action_dim: int = flax.struct.field(pytree_node=False)
    optimizer: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def training_state(config, params: dict, target: str = "critic", optimizer=None) -> dict:
    """The fields every TD agent's `create` fills alike: its parameters, a copy of `params[target]` as the
    Polyak target critic, the optimizer (`adam(config.lr)` unless given) and its state, and the config."""
    optimizer = optimizer or adam(config.lr)
    return {
        "params": params,
        "target_critic": jax.tree_util.tree_map(jnp.copy, params[target]),
        "opt_state": optimizer.init(params),
        "optimizer": optimizer,
        "config": config,
    }


def sum_losses(**named: tuple[jax.Array, dict]) -> tuple[jax.Array, dict]:
    """The sum of named (loss, info) pairs, and their infos in one dict with keys prefixed by the name
    (`critic/q_mean`), so that W&B groups the metrics of each loss."""
    total = functools.reduce(operator.add, (loss for loss, _ in named.values()))
    info = {f"{name}/{key}": value for name, (_, part) in named.items() for key, value in part.items()}
    return total, info


CROP_PADDING = 3  # pixels of edge padding each side for the random crop, FQL's utils/datasets.py `augment`


def random_crop(batch: dict, key: jax.Array, aug_prob: float, padding: int = CROP_PADDING) -> dict:
    """FQL's random-crop augmentation on pixel batches: with probability `aug_prob` (one draw per batch, as
    FQL's `np.random.rand() < p_aug`), every sample is edge-padded by `padding` pixels and cropped back to its
    size at a shift (dy, dx) drawn uniformly in [0, 2 * padding] for that sample. The shift is the same for
    every frame of the sample's stack (frames lie on the channel axis) and for each of its
    next_observations, as FQL crops observations and next_observations with one `crop_froms`.

    A batch the draw leaves alone costs nothing (`jax.lax.cond`, not a select of both); under `jax.vmap`
    over a vector of runs, each with its own draw, the cond becomes a select and every run's batch is
    cropped. Reading clamped coordinates instead of an edge-padded copy gives the same numbers, but XLA
    materialises their per-pixel int32 indices, more bytes than the uint8 copy, and measured slower on the
    CPU (docs/speed.md, "Gathering a visual batch").

    observations: (batch, height, width, channels); next_observations: (batch, steps, height, width,
    channels). Other keys pass through.
    """
    apply_key, shift_key = jax.random.split(key)
    shifts = jax.random.randint(shift_key, (batch["observations"].shape[0], 2), 0, 2 * padding + 1)

    def crop(images, shift):
        """images: one sample's (..., height, width, channels)."""
        leading = images.ndim - 3
        pads = [(0, 0)] * leading + [(padding, padding), (padding, padding), (0, 0)]
        start = (0,) * leading + (shift[0], shift[1], 0)
        return jax.lax.dynamic_slice(jnp.pad(images, pads, mode="edge"), start, images.shape)

    def cropped(batch):
        names = ("observations", "next_observations")
        return {**batch, **{name: jax.vmap(crop)(batch[name], shifts) for name in names}}

    return jax.lax.cond(jax.random.uniform(apply_key) < aug_prob, cropped, dict, batch)


def augments(config, batch: dict) -> bool:
    """Whether an update crops its batch: a positive `aug_prob` and image observations (batch, h, w, c)."""
    return getattr(config, "aug_prob", 0.0) > 0 and batch["observations"].ndim == 4


def optimizer_step(agent, batch: dict, *noise_shape: int):
    """Draws the update's noise, takes the gradient of `agent.total_loss` and one optimizer step.

    A pixel batch is first random-cropped (`random_crop`, when `augments`) with a key of its own split from
    the noise key, so a state run's keys and numbers are those without augmentation.

    noise_shape: the arguments of `agent.draw_noise` after the key. Returns the agent with its rng, params and
    optimizer state stepped, the gradients (for metrics) and the losses' info.
    """
    rng, key = jax.random.split(agent.rng)
    if augments(agent.config, batch):
        key, crop_key = jax.random.split(key)
        batch = random_crop(batch, crop_key, agent.config.aug_prob)
    noise = agent.draw_noise(key, *noise_shape)
    grads, info = jax.grad(agent.total_loss, has_aux=True)(agent.params, batch, noise)
    updates, opt_state = agent.optimizer.update(grads, agent.opt_state, agent.params)
    params = optax.apply_updates(agent.params, updates)
    return agent.replace(rng=rng, params=params, opt_state=opt_state), grads, info


def with_target_critic(agent, batch: dict, critic: str = "critic"):
    """The TD agents' update: one optimizer step on the summed losses of a batch of chunks, and the Polyak
    average target_critic <- tau * params[critic] + (1 - tau) * target_critic with the critic's params from
    before the step, as the reference does (ColinQiyangLi/qc agents/acfql.py `target_update` reads
    `self.network.params`). info gains `grad/norm`, the global norm of all gradients."""
    target_critic = optax.incremental_update(agent.params[critic], agent.target_critic, agent.config.tau)
    agent, grads, info = optimizer_step(agent, batch, batch["observations"].shape[0])
    info["grad/norm"] = optax.tree.norm(grads)
    return agent.replace(target_critic=target_critic), info


def is_delayed_step(step, period) -> jax.Array:
    """Whether update number `step` (0-based) is one of TD3's delayed ones: the period-th, 2*period-th, ...
    update, as FQL's loop counts `i % actor_freq == 0` from i = 1. A traced value, so it can sit inside
    jit."""
    return (step + 1) % period == 0


def with_delayed_targets(agent, batch: dict, period, targets: tuple[str, ...] = ("critic", "actor")):
    """TD3's update: one optimizer step on the summed losses (the agent zeroes its actor loss off the delayed
    steps itself), then the Polyak average target_<name> <- tau * params[name] + (1 - tau) * target_<name>
    for each of `targets`, only on a delayed step (`is_delayed_step(agent.step, period)`), with the params
    from before the step as in `with_target_critic` (FQL's `target_update` reads `self.network.params`).
    The agent brings an integer `step` field, counted here. info gains `grad/norm`."""
    delayed = is_delayed_step(agent.step, period)
    updated = {}
    for name in targets:
        old = getattr(agent, f"target_{name}")
        new = optax.incremental_update(agent.params[name], old, agent.config.tau)
        updated[f"target_{name}"] = jax.tree_util.tree_map(lambda n, o: jnp.where(delayed, n, o), new, old)
    agent, grads, info = optimizer_step(agent, batch, batch["observations"].shape[0])
    info["grad/norm"] = optax.tree.norm(grads)
    return agent.replace(step=agent.step + 1, **updated), info
