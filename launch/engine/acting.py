"""Acting at every environment step: one jitted call gives every run (or eval env) its action from its current
observation and its carry, the per-env state its policy owns between steps.

A closed-loop agent (one that defines `act_step`, agents/__init__.py) owns its carry: a skill's latent and
its step counter, say. Every other agent acts open loop: its carry is the chunk queue, a chunk from
`sample_actions` (`eval_actions` in evaluation) and the steps of it still to execute. Either way the carry's
`steps_left` leaf counts the steps of the current decision still to come, 0 meaning that the next act
starts a new one: the engine pays owed updates there (chunks.py) and hands a fresh key only there
(evaluation.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from launch.engine.fused import over_runs


def is_closed_loop(agent) -> bool:
    return hasattr(agent, "act_step")


def _policy(agent, evaluation: bool):
    """The open-loop agent's chunk policy: (observations (batch, ...), key) -> (batch, steps, action_dim)."""
    return agent.eval_actions if evaluation and hasattr(agent, "eval_actions") else agent.sample_actions


def initial_carry(agents, observation: np.ndarray, execution_length: int | None) -> dict:
    """One env's carry before its episode's first act (no run axis), for agents stacked on a run axis: the
    closed-loop agent's `initial_carry()`, else an empty queue for the first `execution_length` actions of a
    chunk (all when None). `observation` (one env's) gives the chunk's shape."""
    agent = jax.tree_util.tree_map(lambda leaf: leaf[0], agents)
    if is_closed_loop(agent):
        return {key: np.asarray(leaf) for key, leaf in agent.initial_carry().items()}
    chunk = jax.eval_shape(agent.sample_actions, jnp.asarray(observation)[None], jax.random.PRNGKey(0))
    steps = min(execution_length or chunk.shape[1], chunk.shape[1])
    return {"steps_left": np.zeros((), np.int32), "chunk": np.zeros((steps, chunk.shape[2]), np.float32)}


def _open_loop_runs(agents, observations, carries, keys, acting, evaluation: bool) -> tuple:
    """Every run's next action of its queued chunk, the policy queried (for every run, in one batch) only
    when an acting run's queue is empty, as the host's chunk queues did; a run whose queue is not empty
    keeps it."""
    steps = carries["chunk"].shape[1]
    empty = (carries["steps_left"] == 0) & acting

    def query(agent, observation, key):
        return _policy(agent, evaluation)(observation[None], key)[0, :steps].astype(jnp.float32)

    fresh = jax.lax.cond(
        empty.any(),
        lambda: over_runs(query, agents, observations, keys, in_axes=(0, 0, 0)),
        lambda: carries["chunk"],
    )
    chunks = jnp.where(empty[:, None, None], fresh, carries["chunk"])
    steps_left = jnp.where(empty, steps, jnp.maximum(carries["steps_left"], 1))
    actions = jnp.take_along_axis(chunks, (steps - steps_left)[:, None, None], axis=1)[:, 0]
    return actions, {"steps_left": steps_left - 1, "chunk": chunks}, {}


@functools.partial(jax.jit, static_argnames=("evaluation",))
def act_runs(agents, observations, carries: dict, keys, acting=None, evaluation: bool = False):
    """Every run's action for its observation (runs, ...), carry (leading run axis) and key (runs, 2): the
    actions (runs, action_dim), the carries after this step and the fields to record beside the actions
    ({name: (runs, ...)}). One call per env step for the whole vector. `acting` (runs,) marks the runs
    whose action is used (all when None): an idle eval env makes no open-loop agent query its policy."""
    if not is_closed_loop(agents):
        acting = jnp.ones(keys.shape[0], bool) if acting is None else jnp.asarray(acting)
        return _open_loop_runs(agents, observations, carries, keys, acting, evaluation)

    def one_run(agent, observation, carry, key):
        action, carry, fields = agent.act_step(observation[None], carry, key, evaluation)
        return action[0], carry, jax.tree_util.tree_map(lambda leaf: leaf[0], fields)

    return over_runs(one_run, agents, observations, carries, keys, in_axes=(0, 0, 0, 0))


def stack_carries(carries: list[dict]) -> dict:
    return jax.tree_util.tree_map(lambda *leaves: np.stack([np.asarray(leaf) for leaf in leaves]), *carries)


def carry_of(carries: dict, index: int) -> dict:
    return jax.tree_util.tree_map(lambda leaf: leaf[index], carries)


def set_carry(carries: dict, index: int, carry: dict) -> dict:
    """`carries` (host arrays, leading axis) with env `index`'s replaced by `carry`."""

    def put(leaves, leaf):
        leaves = np.array(leaves)
        leaves[index] = np.asarray(leaf)
        return leaves

    return jax.tree_util.tree_map(put, carries, carry)


def carry_to_json(carry: dict) -> dict:
    """A carry as JSON for a checkpoint's open episode: each leaf as nested lists (float32 values and
    integers survive the round trip exactly)."""
    return {key: np.asarray(leaf).tolist() for key, leaf in carry.items()}


def carry_from_json(saved: dict, template: dict) -> dict:
    """The carry `carry_to_json` wrote, in `template`'s dtypes."""
    return {key: np.asarray(saved[key], np.asarray(leaf).dtype) for key, leaf in template.items()}
