"""Vectors of runs (launch/engine/run.py): each run of a vector is the run it would have been alone."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from omegaconf import OmegaConf

from launch import train as train_module
from launch.engine import chunks, vector
from tests.helpers import compose_config, train_interrupted

TINY = [
    "agent.hidden_dims=[16,16]",
    "batch_size=16",
    "offline_steps=10",
    "online_steps=20",
    "start_training=5",
    "eval_interval=10",
    "eval_episodes=1",
    "log_interval=5",
    "save_interval=10",
    "updates_per_dispatch=5",
    "env.max_episode_steps=8",
    "buffer_size=2000",
]
AGENT_OVERRIDES = {
    "qc_fql": [],
    "qc": ["agent.num_samples=4", "agent.flow_steps=3"],
    "rlpd": ["random_action_steps=5", "agent.num_qs=2"],
}


def tiny_config(dataset_dir, agent, *overrides):
    return compose_config(
        f"agent={agent}",
        "env=pointmaze",
        f"env.dataset_dir={dataset_dir}",
        "env.download=false",
        "logger.mode=disabled",
        *TINY,
        *AGENT_OVERRIDES[agent],
        *overrides,
    )


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def untimed(logged: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "time"} for row in logged]


def assert_same_rows(vector_rows: list[dict], single_rows: list[dict]):
    assert len(vector_rows) == len(single_rows) > 0
    for got, expected in zip(vector_rows, single_rows, strict=True):
        assert got.keys() == expected.keys()
        assert (got["step"], got["phase"]) == (expected["step"], expected["phase"])
        for key in got.keys() - {"step", "phase", "time"}:
            if key.endswith("success"):
                assert got[key] == expected[key], key
            else:
                np.testing.assert_allclose(got[key], expected[key], rtol=2e-4, atol=1e-5, err_msg=key)


def test_lists_make_one_member_per_task_and_seed(tmp_path):
    cfg = compose_config("seed=[0,1,2]", "env.task=[1,3]")
    members = vector.vector_members(cfg, tmp_path)
    assert [(m.task, m.seed) for m in members] == [(1, 0), (1, 1), (1, 2), (3, 0), (3, 1), (3, 2)]
    assert members[4].run_dir == tmp_path / "task=3,seed=1"
    assert members[4].cfg.env.name == "cube-double-play-singletask-task3-v0"
    assert vector.vector_members(compose_config("seed=4"), tmp_path)[0].run_dir == tmp_path
    with pytest.raises(ValueError, match=r"invalid setting seed=\[1, 1\]: expected distinct integers"):
        vector.vector_members(compose_config("seed=[1,1]"), tmp_path)


@pytest.mark.parametrize("agent", ["qc_fql", "qc", "rlpd"])
def test_each_run_of_a_vector_equals_the_run_alone(tiny_dataset_dir, tmp_path, agent):
    """2 tasks x 2 seeds in one process against the four single runs: offline and online losses, episode
    returns and evaluation successes, row by row."""
    vector = train_module.train(
        tiny_config(tiny_dataset_dir, agent, "seed=[0,1]", "env.task=[1,2]"), tmp_path / "vector"
    )
    assert vector.replay.offline.rewards.shape[0] == 2  # the dataset once, a reward row per task
    for index, member in enumerate(vector.members):
        alone = train_module.train(
            tiny_config(tiny_dataset_dir, agent, f"seed={member.seed}", f"env.task={member.task}"),
            tmp_path / f"alone{index}",
        )
        saved = OmegaConf.load(member.run_dir / ".hydra" / "config.yaml")
        assert (saved.seed, saved.env.task) == (member.seed, member.task)
        assert_same_rows(rows(member.run_dir), rows(tmp_path / f"alone{index}"))
        member_params = jax.tree_util.tree_map(lambda leaf, i=index: leaf[i], vector.agent.params)
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a, b[0], rtol=1e-3, atol=1e-5),
            member_params,
            alone.agent.params,
        )


def test_a_vector_resumes_exactly_after_an_interruption(tiny_dataset_dir, tmp_path, monkeypatch):
    """The kill-and-resume test on a vector of two runs, interrupted mid-episode online."""
    overrides = ("seed=[0,1]", "env.task=3")
    full = train_module.train(tiny_config(tiny_dataset_dir, "qc_fql", *overrides), tmp_path / "full")
    # killed at the 4th online dispatch: past the checkpoint at env step 10, with an episode open since step 8
    train_interrupted(
        train_module.train,
        tiny_config(tiny_dataset_dir, "qc_fql", *overrides),
        tmp_path / "resumed",
        monkeypatch,
        4,
    )
    resumed = train_module.train(
        tiny_config(tiny_dataset_dir, "qc_fql", *overrides, "resume=true"), tmp_path / "resumed"
    )
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.agent.params, full.agent.params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.replay.online, full.replay.online)
    for name in ("seed=0", "seed=1"):  # the same rows, none duplicated by the resume (task 3 is no axis)
        assert untimed(rows(tmp_path / "resumed" / name)) == untimed(rows(tmp_path / "full" / name))


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


def shards_config(tiny_shards_cfg, *overrides):
    generate = tiny_shards_cfg.generate
    return compose_config(
        "agent=qc_fql",
        "env=cube_quadruple_100m",
        f"env.dataset_dir={tiny_shards_cfg.dataset_dir}",
        f"env.generate.num_episodes={generate.num_episodes}",
        f"env.generate.max_episode_steps={generate.max_episode_steps}",
        "env.shard_interval=5",
        "logger.mode=disabled",
        *TINY,
        *overrides,
    )


def test_a_sharded_dataset_streams_through_training_and_resumes_exactly(
    tiny_shards_cfg, tmp_path, monkeypatch, caplog
):
    """Offline and online through the stream, a swap every 5 updates (every 5 env steps online with
    env.swap_online), killed online and resumed: the same parameters, online replay and resident shards as
    the uninterrupted run."""
    with caplog.at_level("INFO", logger="launch.engine.run"):
        full = train_module.train(shards_config(tiny_shards_cfg, "env.swap_online=true"), tmp_path / "full")
    swaps = [record.getMessage() for record in caplog.records if "shard swap" in record.getMessage()]
    assert len(swaps) == 10 // 5 + 20 // 5 - 1  # offline at 5, 10; online at env steps 5, 10, 15
    assert full.stream.position == len(swaps)

    # killed at the 4th online dispatch: past the checkpoint at env step 10
    swapping = "env.swap_online=true"
    train_interrupted(
        train_module.train, shards_config(tiny_shards_cfg, swapping), tmp_path / "resumed", monkeypatch, 4
    )
    resumed = train_module.train(
        shards_config(tiny_shards_cfg, swapping, "resume=true"), tmp_path / "resumed"
    )
    assert resumed.stream.state() == full.stream.state()
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.agent.params, full.agent.params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.replay, full.replay)
    assert untimed(rows(tmp_path / "resumed")) == untimed(rows(tmp_path / "full"))


def test_shards_swap_offline_only_by_default(tiny_shards_cfg, tmp_path, caplog):
    """As the reference's main.py: online, the shard resident at the end of the offline phase stays."""
    with caplog.at_level("INFO", logger="launch.engine.run"):
        run = train_module.train(shards_config(tiny_shards_cfg), tmp_path / "run")
    swaps = [record.getMessage() for record in caplog.records if "shard swap" in record.getMessage()]
    assert [message.split(":")[0] for message in swaps] == [
        "shard swap 1 at step 5",
        "shard swap 2 at step 10",
    ]
    assert run.stream.position == 2 and run.counters.env_step == 20
    assert run.resident_shards() == [run.stream.path_of(2).name]
