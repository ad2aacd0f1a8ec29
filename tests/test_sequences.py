"""Sequence agents through the one engine (launch/engine/sequences.py): RADT and DT offline then Online DT,
resumed exactly, and as a vector whose members equal their single runs."""

import json
import signal

import jax
import numpy as np
import pytest

import preemption
from launch import train as train_module
from launch.engine.run import Run
from tests.helpers import compose_config
from tests.test_vector import assert_same_rows, untimed

# ---- end to end -------------------------------------------------------------------------------------------


TINY = [
    "env=pointmaze",
    "env.download=false",
    "logger.mode=disabled",
    "agent.context_length=4",
    "agent.num_layers=1",
    "agent.embed_dim=16",
    "agent.warmup_steps=5",
    "agent.eval_num_targets=2",
    "agent.eval_episodes_per_target=1",
    "agent.replay_trajectories=5",
    "batch_size=8",
    "offline_steps=20",
    "online_steps=30",
    "start_training=5",
    "eval_interval=10",
    "eval_episodes=1",
    "log_interval=10",
    "save_interval=10",
    "updates_per_dispatch=10",
    "env.max_episode_steps=12",
]


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def tiny_run_config(dataset_dir, agent_name, *overrides):
    return compose_config(f"agent={agent_name}", f"env.dataset_dir={dataset_dir}", *TINY, *overrides)


def check_finished_run(run, run_dir):
    logged = rows(run_dir)
    evals = [row for row in logged if "eval/success" in row]
    # online evaluations come at the first episode end past each interval: episodes last 12 steps here
    assert [row["step"] for row in evals] == [10, 20, 32, 44, 50]
    assert [row["phase"] for row in evals] == ["offline"] * 2 + ["online"] * 3
    assert all(row["eval/return_alignment_error"] >= 0 and row["eval/episode_length"] <= 12 for row in evals)
    assert [row["step"] for row in logged if "offline/actor/mse" in row] == [10, 20]
    assert any("online/actor/log_likelihood" in row for row in logged)
    assert [row["step"] for row in logged if "online/episode_return" in row] == [32, 44]
    assert run.counters.env_step == 30 and run.checkpointer.latest_step() == 50
    # 4 dataset trajectories seeded 5 slots: the first episode fills the empty slot, the next replace seeds
    assert np.asarray(run.replay.online.lengths)[0, [4, 0, 1]].tolist() == [12, 12, 6]
    assert int(run.replay.online.count[0]) == 7
    assert run.agent.online


def test_dt_offline_to_online_run_end_to_end(tiny_dataset_dir, tmp_path):
    run = train_module.train(tiny_run_config(tiny_dataset_dir, "dt"), tmp_path)
    check_finished_run(run, tmp_path)
    assert "block_0" in run.agent.params["model"]["params"] and run.agent.network.return_alignment is False


def test_radt_run_end_to_end_and_resumed_after_an_interruption(tiny_dataset_dir, tmp_path, monkeypatch):
    full = train_module.train(tiny_run_config(tiny_dataset_dir, "radt"), tmp_path / "full")
    check_finished_run(full, tmp_path / "full")

    class Interrupt(Exception):
        pass

    original = Run.update
    calls = {"online": 0}

    def interrupting_train(self, num_updates, online):
        calls["online"] += online
        if calls["online"] == 2:  # the second episode's updates: after the checkpoint at the first's end
            raise Interrupt
        return original(self, num_updates, online)

    monkeypatch.setattr(Run, "update", interrupting_train)
    with pytest.raises(Interrupt):
        train_module.train(tiny_run_config(tiny_dataset_dir, "radt"), tmp_path / "resumed")
    monkeypatch.setattr(Run, "update", original)
    assert (tmp_path / "resumed" / "checkpoints" / "32").exists()
    resumed = train_module.train(
        tiny_run_config(tiny_dataset_dir, "radt", "resume=true"), tmp_path / "resumed"
    )
    check_finished_run(resumed, tmp_path / "resumed")
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.agent.params, full.agent.params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.replay, full.replay)


def test_sequence_run_refuses_settings_it_cannot_honour(tmp_path):
    cfg = tiny_run_config("/nonexistent", "radt", "random_action_steps=5")
    with pytest.raises(ValueError, match=r"invalid setting random_action_steps=5: expected 0 for agent"):
        train_module.train(cfg, tmp_path)
    with pytest.raises(
        ValueError, match=r"invalid setting offline_ratio=0.5: expected null for agent.algorithm=radt"
    ):
        train_module.train(tiny_run_config("/nonexistent", "dt", "offline_ratio=0.5"), tmp_path)


def test_a_radt_vector_of_seeds_trains_each_member_as_its_single_run(tiny_dataset_dir, tmp_path):
    vector = train_module.train(tiny_run_config(tiny_dataset_dir, "radt", "seed=[0,1]"), tmp_path / "vector")
    assert [member.run_dir.name for member in vector.members] == ["seed=0", "seed=1"]
    for index, member in enumerate(vector.members):
        alone = train_module.train(
            tiny_run_config(tiny_dataset_dir, "radt", f"seed={member.seed}"), tmp_path / f"alone{index}"
        )
        assert_same_rows(untimed(rows(member.run_dir)), untimed(rows(tmp_path / f"alone{index}")))
        member_params = jax.tree_util.tree_map(lambda leaf, i=index: leaf[i], vector.agent.params)
        jax.tree_util.tree_map(
            lambda got, expected: np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-6),
            member_params,
            jax.tree_util.tree_map(lambda leaf: leaf[0], alone.agent.params),
        )


@pytest.mark.parametrize(
    "where, step",
    # env step 17 (global 37), five steps into each run's second episode: the checkpoint holds the open
    # episodes, replayed from their reset seeds on resume; or the evaluation at the first episode end (global
    # 32), cut at its first env step: the checkpoint owes it, and the resumed run evaluates first
    [("step", 37), ("eval", 32)],
    ids=["mid-episode", "mid-evaluation"],
)
def test_a_radt_vector_signalled_resumes_exactly(tiny_dataset_dir, tmp_path, monkeypatch, where, step):
    cfg = tiny_run_config(tiny_dataset_dir, "radt", "seed=[0,1]")
    full = train_module.train(cfg, tmp_path / "full")
    at = {}
    monkeypatch.setattr(preemption, "pause_for_tests", lambda point, at_step: at.update({point: at_step}))
    monkeypatch.setattr(preemption, "received", lambda: signal.SIGTERM if at.get(where) == step else None)
    with pytest.raises(preemption.Interrupted):
        train_module.train(cfg, tmp_path / "resumed")
    monkeypatch.undo()
    assert (tmp_path / "resumed" / "checkpoints" / str(step)).exists()
    for name in ("seed=0", "seed=1"):
        evaluated = [row["step"] for row in rows(tmp_path / "resumed" / name) if "eval/success" in row]
        assert evaluated == {"step": [10, 20, 32], "eval": [10, 20]}[where]  # "eval": the one at 32 was cut
    resumed = train_module.train(
        tiny_run_config(tiny_dataset_dir, "radt", "seed=[0,1]", "resume=true"), tmp_path / "resumed"
    )
    for name in ("seed=0", "seed=1"):
        assert untimed(rows(tmp_path / "resumed" / name)) == untimed(rows(tmp_path / "full" / name))
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.agent.params, full.agent.params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.replay, full.replay)
