"""The train loop end to end on tiny generated data: metrics, W&B run, checkpoints, resume, NaN stop."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from hydra.errors import MissingConfigException

from launch import train as train_module
from tests.helpers import compose_config, train_interrupted

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "agent.hidden_dims=[16,16]",
    "batch_size=16",
    "offline_steps=40",
    "online_steps=40",
    "start_training=10",
    "eval_interval=20",
    "eval_episodes=1",
    "log_interval=10",
    "save_interval=20",
    "updates_per_dispatch=10",
    "env.max_episode_steps=15",
    "buffer_size=2000",
]


def tiny_config(dataset_dir, *overrides, env="pointmaze", logger="disabled"):
    return compose_config(
        "agent=qc_fql",
        f"env={env}",
        f"env.dataset_dir={dataset_dir}",
        "env.download=false",
        f"logger.mode={logger}",
        *TINY,
        *overrides,
    )


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_offline_to_online_run_writes_metrics_wandb_and_checkpoints(tiny_dataset_dir, tmp_path):
    run = train_module.train(tiny_config(tiny_dataset_dir, logger="offline"), tmp_path)
    logged = rows(tmp_path)
    evals = [row for row in logged if "eval/success" in row]
    assert [row["phase"] for row in evals] == ["offline", "offline", "online", "online"]
    assert [row["step"] for row in evals] == [20, 40, 60, 80]
    assert all(0.0 <= row["eval/success"] <= 1.0 for row in evals)
    offline = [row for row in logged if "offline/critic/critic_loss" in row]
    assert [row["step"] for row in offline] == [10, 20, 30, 40]
    assert any("online/actor/bc_flow_loss" in row for row in logged)
    assert any("online/episode_return" in row for row in logged)
    assert all(np.diff([row["time"] for row in logged]) >= 0)
    assert list((tmp_path / "wandb").glob("offline-run-*"))
    assert run.checkpointer.latest_step() == 80
    assert set(run.counters.runs[0].success) == {"offline", "online"}


def test_resumed_run_reaches_the_same_final_state(tiny_dataset_dir, tmp_path, monkeypatch):
    full = train_module.train(tiny_config(tiny_dataset_dir), tmp_path / "full")

    # killed at env step 25: after the checkpoint at env step 20, mid-episode
    train_interrupted(train_module.train, tiny_config(tiny_dataset_dir), tmp_path / "resumed", monkeypatch, 5)
    with pytest.raises(FileExistsError, match="pass resume=true"):
        train_module.train(tiny_config(tiny_dataset_dir), tmp_path / "resumed")
    resumed = train_module.train(tiny_config(tiny_dataset_dir, "resume=true"), tmp_path / "resumed")

    assert resumed.counters.env_step == full.counters.env_step == 40
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.agent.params, full.agent.params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.replay, full.replay)
    steps = [row["step"] for row in rows(tmp_path / "resumed") if "eval/success" in row]
    assert steps == [20, 40, 60, 80]  # rows logged after the checkpoint were not duplicated


def test_invalid_setting_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="invalid setting offline_ratio=2.0"):
        train_module.train(compose_config("offline_ratio=2.0", "env.dataset_dir=/nonexistent"), tmp_path)
    assert not list(tmp_path.iterdir())


def test_unknown_agent_or_env_lists_the_valid_ones():
    with pytest.raises(MissingConfigException, match=r"(?s)Could not find 'agent/qcfql'.*qc_fql"):
        compose_config("agent=qcfql")
    with pytest.raises(MissingConfigException, match=r"(?s)Could not find 'env/cubes'.*cube_triple"):
        compose_config("env=cubes")


def test_readme_command_runs_the_debug_preset(tiny_dataset_dir, tmp_path):
    """`python launch/train.py ... preset=debug` as a user types it (with a tiny dataset and budget)."""
    result = subprocess.run(
        [
            sys.executable,
            "launch/train.py",
            "agent=qc_fql",
            "env=pointmaze",
            "preset=debug",
            f"env.dataset_dir={tiny_dataset_dir}",
            "env.download=false",
            "logger.mode=disabled",
            "offline_steps=20",
            "online_steps=20",
            "start_training=5",
            "eval_episodes=1",
            "env.max_episode_steps=20",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "done: offline success" in result.stderr + result.stdout
    assert (tmp_path / ".hydra" / "config.yaml").exists()
    assert any("eval/success" in row for row in rows(tmp_path))
