"""The online host side of TD agents (launch/engine/chunks.py): chunk queues and policy queries."""

import jax
import numpy as np

from launch import train as train_module
from launch.engine import chunks
from tests.test_vector import rows, tiny_config, untimed


def count_policy_queries(monkeypatch) -> dict:
    calls = {"queries": 0}
    original = chunks.act_runs

    def counting(agents, observations, keys):
        calls["queries"] += 1
        return original(agents, observations, keys)

    monkeypatch.setattr(chunks, "act_runs", counting)
    return calls


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
