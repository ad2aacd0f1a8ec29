"""The hot path: many (sample, update, target update) steps in one jitted call, no host round-trip.

Both the train loop and the benchmark use these, so what is measured is what trains.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from buffers import Replay


@functools.partial(jax.jit, static_argnames=("batch_size", "online"), donate_argnums=(0,))
def fused_updates(
    agent, rng: jax.Array, replay: Replay, num_updates: jax.Array, *, batch_size: int, online: bool
):
    """Run `num_updates` updates (a traced count: one compilation serves every dispatch size).

    Returns the new agent and rng, the metrics averaged over the updates, the index of the first update
    with a non-finite metric (-1 if none) and, for that update, which metrics were non-finite.
    """
    config = agent.config

    def one_update(agent, key):
        batch = replay.sample(key, batch_size, config.chunk_length, config.discount, online)
        return agent.update(batch)

    info_shapes = jax.eval_shape(one_update, agent, rng)[1]
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), info_shapes)
    no_bad = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, bool), info_shapes)

    def body(index, carry):
        agent, rng, sums, first_bad, bad = carry
        rng, key = jax.random.split(rng)
        agent, info = one_update(agent, key)
        finite = jax.tree_util.tree_map(jnp.isfinite, info)
        newly_bad = (first_bad < 0) & ~jnp.all(jnp.stack(jax.tree_util.tree_leaves(finite)))
        first_bad = jnp.where(newly_bad, index, first_bad)
        bad = jax.tree_util.tree_map(lambda was, ok: jnp.where(newly_bad, ~ok, was), bad, finite)
        sums = jax.tree_util.tree_map(jnp.add, sums, info)
        return agent, rng, sums, first_bad, bad

    init = (agent, rng, zeros, jnp.asarray(-1, jnp.int32), no_bad)
    agent, rng, sums, first_bad, bad = jax.lax.fori_loop(0, num_updates, body, init)
    means = jax.tree_util.tree_map(lambda total: total / jnp.maximum(num_updates, 1), sums)
    return agent, rng, means, first_bad, bad


@jax.jit
def act(agent, observations: jax.Array, key: jax.Array) -> jax.Array:
    """The agent's actions for observations (batch, obs_dim): (batch, steps, action_dim)."""
    return agent.sample_actions(observations, key)


def env_transition(observation, action, reward, terminated: bool, truncated: bool, next_observation) -> dict:
    """One environment step as a length-1 batch for `insert`: masks = 1 - terminated (a true terminal),
    terminals = terminated or truncated (the episode's last transition)."""
    return {
        "observations": observation[None],
        "actions": action[None],
        "rewards": np.float32([reward]),
        "masks": np.float32([1.0 - terminated]),
        "terminals": np.float32([terminated or truncated]),
        "next_observations": next_observation[None],
    }


@functools.partial(jax.jit, donate_argnums=(0,))
def insert(replay: Replay, transitions: dict) -> Replay:
    """Append online transitions (leading time axis) in place."""
    return replay.insert(transitions)
