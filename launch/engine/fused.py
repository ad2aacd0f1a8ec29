"""The hot path: many (sample, update, target update) steps in one jitted call, no host round-trip, for every
run of a vector at once.

Every function here takes the runs' agents and RNGs stacked on a leading run axis and maps the one-run
computation over it (`over_runs`: jax.vmap or jax.lax.map, or the plain computation for a vector of one), so
a single run is a vector of one and R runs cost one dispatch. The train loop and the benchmark both use
these, so what is measured is what trains.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from envs.observations import observation_array


def reads_every_next(agent) -> bool:
    """Whether `agent`'s update reads next_observations at every step of a chunk (SUPE-GT's segments); an
    agent that does not declare `reads_every_next_observation` reads the last only, as a TD target does,
    and is sampled that one alone (buffers/chunks.py `gather_chunks`)."""
    return getattr(type(agent), "reads_every_next_observation", False)


def _run_updates(agent, rng, replay, num_updates, batch_size: int, online: bool):
    """`num_updates` updates of one run (a traced count: one compilation serves every dispatch size)."""
    config = agent.config

    # An agent that learns differently online (one that pre-trains offline) brings an `online_update`.
    update = type(agent).online_update if online and hasattr(agent, "online_update") else type(agent).update

    every_next = reads_every_next(agent)

    def one_update(agent, key):
        batch = replay.sample(key, batch_size, config.sample_length, config.discount, online, every_next)
        return update(agent, batch)

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


# How fused_updates maps a vector of R > 1 runs on each backend: "vmap" batches the runs into one
# computation, "map" (jax.lax.map) loops over them. Chosen from `benchmark.py --run-map` (docs/speed.md: on
# a 2-core CPU lax.map is the faster for 4 QC-FQL runs, with a shared count and with a count per run); an
# unlisted backend (a GPU) batches, which is the point of vectors there.
RUN_MAPS = {"cpu": "map"}


def run_map_of_backend() -> str:
    return RUN_MAPS.get(jax.default_backend(), "vmap")


def over_runs(one_run, *trees, in_axes, run_map: str = "vmap"):
    """`one_run` over the leading run axis of `trees` (`in_axes` as for jax.vmap: 0 or None per tree), by
    `run_map` ("vmap" or "map": jax.lax.map).

    A vector of one takes the plain path, its run axis dropped and put back: on a CPU, XLA's lowering of
    batched matmuls and the select over the whole carry that a batched trip count brings cost a lone run
    about a quarter of its updates/s (issue 18, part 7).
    """
    sizes = {  # a tree without leaves (a goal replay's run part) has no run axis to read
        leaves[0].shape[0]
        for tree, axis in zip(trees, in_axes, strict=True)
        if axis == 0 and (leaves := jax.tree_util.tree_leaves(tree))
    }
    if sizes == {1}:
        squeezed = [
            jax.tree_util.tree_map(lambda leaf: leaf[0], tree) if axis == 0 else tree
            for tree, axis in zip(trees, in_axes, strict=True)
        ]
        return jax.tree_util.tree_map(lambda leaf: leaf[None], one_run(*squeezed))
    if run_map == "vmap":
        return jax.vmap(one_run, in_axes=in_axes)(*trees)
    if run_map != "map":
        raise ValueError(f"unknown run_map {run_map!r}; valid: 'vmap', 'map'")

    def one(mapped: tuple):
        leaves = iter(mapped)
        return one_run(
            *(next(leaves) if axis == 0 else tree for tree, axis in zip(trees, in_axes, strict=True))
        )

    return jax.lax.map(one, tuple(tree for tree, axis in zip(trees, in_axes, strict=True) if axis == 0))


@functools.partial(jax.jit, static_argnames=("batch_size", "online", "run_map"), donate_argnums=(0,))
def fused_updates(
    agents,
    rngs: jax.Array,
    replay,
    num_updates: jax.Array,
    *,
    batch_size: int,
    online: bool,
    run_map: str | None = None,
):
    """Run `num_updates[i]` updates of run i, for every run (leading axis of `agents`, `rngs`, `num_updates`).

    A scalar `num_updates` gives every run that count, unbatched, so the loop's trip count is not a per-run
    select (every offline dispatch). Runs given 0 updates come back unchanged, so one dispatch can serve the
    runs whose chunk has ended while the others carry on. `replay.run_part()` holds what each run owns
    (leading run axis); the rest of the replay (the offline data) is shared. Returns the new agents and rngs,
    each run's metrics averaged over its updates, the index of its first update with a non-finite metric (-1
    if none) and, for that update, which metrics were non-finite. `run_map` overrides the backend's choice
    of how R > 1 runs are mapped (RUN_MAPS); the benchmark measures both.
    """

    def one_run(agent, rng, part, count):
        return _run_updates(agent, rng, replay.with_run_part(part), count, batch_size, online)

    count_axis = None if jnp.ndim(num_updates) == 0 else 0
    return over_runs(
        one_run,
        agents,
        rngs,
        replay.run_part(),
        num_updates,
        in_axes=(0, 0, 0, count_axis),
        run_map=run_map or run_map_of_backend(),
    )


@jax.jit
def act(agent, observations: jax.Array, key: jax.Array) -> jax.Array:
    """One agent's actions for observations (batch, obs_dim): (batch, steps, action_dim)."""
    return agent.sample_actions(observations, key)


@jax.jit
def explore_runs(agents, windows: dict, keys: jax.Array) -> jax.Array:
    """Every run's stochastic (exploration) action for its context window (leaves (runs, 1, K, ...)) with its
    key (runs, 2): (runs, 1, 1, action_dim). A sequence agent's online policy query."""

    def one_run(agent, window, key):
        return agent.sample_actions(window, key, stochastic=True)

    return over_runs(one_run, agents, windows, keys, in_axes=(0, 0, 0))


def env_transitions(
    observations, actions, rewards, terminated, truncated, next_observations, fields=None
) -> dict:
    """One environment step of every run, as a length-1 time axis per run for `insert`: masks = 1 -
    terminated (a true terminal), terminals = terminated or truncated (the episode's last transition), and
    the `fields` {name: (runs, ...)} the agent records beside its actions."""
    terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
    return {
        "observations": observation_array(observations)[:, None],
        "actions": np.asarray(actions, np.float32)[:, None],
        "rewards": np.asarray(rewards, np.float32)[:, None],
        "masks": (1.0 - terminated.astype(np.float32))[:, None],
        "terminals": (terminated | truncated).astype(np.float32)[:, None],
        "next_observations": observation_array(next_observations)[:, None],
        **{name: np.asarray(value, np.float32)[:, None] for name, value in (fields or {}).items()},
    }


@functools.partial(jax.jit, donate_argnums=(0,))
def insert(replay, items: dict, where: jax.Array | None = None):
    """Append each run's items (leading run axis: transitions (runs, time, ...) or one padded trajectory per
    run) to its own online data, in place; with `where` (runs,), only to the runs where it is true."""

    def one_run(part, run_items, keep):
        new = replay.with_run_part(part).insert(run_items).run_part()
        if keep is None:
            return new
        return jax.tree_util.tree_map(lambda grown, old: jnp.where(keep, grown, old), new, part)

    return replay.with_run_part(jax.vmap(one_run)(replay.run_part(), items, where))
