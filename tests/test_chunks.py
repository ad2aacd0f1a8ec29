"""The online host side of TD agents (launch/engine/chunks.py) and acting through carries
(launch/engine/acting.py): chunk queues as carries give the numbers the host's queues gave, and the policy
is queried once a chunk."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from launch import train as train_module
from launch.engine import acting, vector
from tests.test_qc_fql import make
from tests.test_vector import rows, tiny_config, untimed


def count_policy_queries(monkeypatch) -> dict:
    """Counts the acts that query an open-loop policy: those where an acting env's queue is empty."""
    calls = {"queries": 0}
    original = acting.act_runs

    def counting(agents, observations, carries, keys, acting_envs=None, evaluation=False):
        deciding = np.asarray(carries["steps_left"]) == 0
        calls["queries"] += bool((deciding if acting_envs is None else deciding & acting_envs).any())
        return original(agents, observations, carries, keys, acting_envs, evaluation=evaluation)

    monkeypatch.setattr(acting, "act_runs", counting)
    return calls


@jax.jit
def query_runs(agents, observations, keys):
    """The engine's policy query before carries: every run's chunk, (runs, steps, action_dim)."""
    return jax.vmap(lambda agent, observation, key: agent.sample_actions(observation[None], key)[0])(
        agents, observations, keys
    )


def host_queues(agents, observations, keys, execution_length):
    """The engine before carries: a chunk queue per run on the host, refilled from one query of every run
    when some run's queue is empty. (steps, runs, action_dim)"""
    queues, actions = [[] for _ in observations[0]], []
    for observation, key in zip(observations, keys, strict=True):
        if any(not queue for queue in queues):
            chunks = np.asarray(query_runs(agents, jnp.asarray(observation), key))
            queues = [
                queue or list(chunk[:execution_length]) for queue, chunk in zip(queues, chunks, strict=True)
            ]
        actions.append([queue.pop(0) for queue in queues])
    return np.asarray(actions)


@pytest.mark.parametrize("execution_length", [None, 2])
def test_an_open_loop_agent_acts_through_its_carry_as_through_a_host_queue(execution_length):
    """A chunk agent's actions through the carry (one jitted act per step) equal, bit for bit, those of the
    host queue it replaces, for the whole chunk and for a shorter execution_length."""
    agent = make()  # QC-FQL, chunks of 3
    stacked = vector.stack([agent, agent])
    steps = 7
    observations = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (steps, 2, 2)))
    keys = np.asarray(jax.random.split(jax.random.PRNGKey(2), steps * 2)).reshape(steps, 2, 2)
    carries = acting.stack_carries([acting.initial_carry(stacked, observations[0, 0], execution_length)] * 2)
    through_carry = []
    for observation, key in zip(observations, keys, strict=True):
        actions, carries, fields = acting.act_runs(stacked, observation, carries, key)
        through_carry.append(np.asarray(actions))
        assert fields == {}
    expected = host_queues(stacked, observations, keys, execution_length)
    np.testing.assert_array_equal(np.asarray(through_carry), expected)


def test_execution_length_one_queries_the_policy_every_step(tiny_dataset_dir, tmp_path, monkeypatch):
    calls = count_policy_queries(monkeypatch)
    train_module.train(tiny_config(tiny_dataset_dir, "qc_fql", "agent.execution_length=1"), tmp_path)
    logged = rows(tmp_path)
    eval_steps = sum(row["eval/episode_length"] for row in logged if "eval/episode_length" in row)
    assert calls["queries"] == 20 + eval_steps  # every online step and every evaluation step


def test_execution_length_of_the_whole_chunk_is_todays_behaviour(tiny_dataset_dir, tmp_path, monkeypatch):
    calls = count_policy_queries(monkeypatch)
    default = train_module.train(tiny_config(tiny_dataset_dir, "qc_fql"), tmp_path / "default")
    default_queries = calls["queries"]
    explicit = train_module.train(
        tiny_config(tiny_dataset_dir, "qc_fql", "agent.execution_length=5"), tmp_path / "explicit"
    )
    assert calls["queries"] == 2 * default_queries < 20 + 4 * 8  # chunks of 5 actions, not one per step
    assert untimed(rows(tmp_path / "explicit")) == untimed(rows(tmp_path / "default"))
    jax.tree_util.tree_map(np.testing.assert_array_equal, explicit.agent.params, default.agent.params)
