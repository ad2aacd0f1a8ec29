"""Evaluation spread over eval.workers env processes per run (launch/engine/evaluation.py): the metrics of a
serial evaluation, whatever the number of workers."""

import json
from pathlib import Path

import pytest

from launch import train as train_module
from launch.engine import settings
from tests.helpers import compose_config

TINY = [
    "agent.hidden_dims=[16,16]",
    "batch_size=16",
    "offline_steps=10",
    "online_steps=0",
    "eval_interval=10",
    "eval_episodes=3",
    "log_interval=5",
    "save_interval=10",
    "updates_per_dispatch=5",
    "env.max_episode_steps=8",
    "buffer_size=2000",
    "eval.execution_lengths=[1]",
]


def evaluations(dataset_dir, run_dir: Path, seeds: str, workers: int) -> list[dict]:
    cfg = compose_config(
        "agent=qc_fql",
        "env=pointmaze",
        f"env.dataset_dir={dataset_dir}",
        "env.download=false",
        "logger.mode=disabled",
        f"seed={seeds}",
        f"eval.workers={workers}",
        *TINY,
    )
    train_module.train(cfg, run_dir)
    member_dirs = sorted(run_dir.glob("seed=*")) or [run_dir]
    return [
        {key: value for key, value in json.loads(line).items() if key.startswith("eval/")}
        for member_dir in member_dirs
        for line in (member_dir / "metrics.jsonl").read_text().splitlines()
        if "eval/success" in line
    ]


@pytest.mark.parametrize("seeds", ["0", "[0,1]"])
def test_two_workers_give_the_serial_metrics_exactly(tiny_dataset_dir, tmp_path, seeds):
    serial = evaluations(tiny_dataset_dir, tmp_path / "serial", seeds, 1)
    assert serial and all("eval/success@execution_length=1" in row for row in serial)
    assert evaluations(tiny_dataset_dir, tmp_path / "parallel", seeds, 2) == serial


def test_default_workers_are_the_cores_at_most_the_episodes(monkeypatch):
    monkeypatch.setattr(settings.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert settings.eval_workers(compose_config("eval_episodes=10")) == 4
    assert settings.eval_workers(compose_config("eval_episodes=3")) == 3
    assert settings.eval_workers(compose_config("eval_episodes=10", "eval.workers=2")) == 2
    with pytest.raises(ValueError, match=r"eval.workers=0: expected null"):
        train_module.train(compose_config("eval.workers=0"), Path("/nonexistent-run-dir"))
