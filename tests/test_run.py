"""A vector of runs' state and operations (launch/engine/run.py): a NaN stops the run, naming the step and
metric, and keeps the last good checkpoint."""

import jax.numpy as jnp
import pytest

from launch import train as train_module
from launch.engine import run as run_module
from tests.test_train import rows, tiny_config


def test_nan_stops_the_run_naming_step_and_metric_and_keeps_the_checkpoint(
    tiny_dataset_dir, tmp_path, monkeypatch
):
    calls = {"n": 0}
    original = run_module.fused_updates

    def poisoned(agent, rng, replay, num_updates, **kwargs):
        calls["n"] += 1
        agent, rng, metrics, first_bad, bad = original(agent, rng, replay, num_updates, **kwargs)
        if calls["n"] == 3:  # the third dispatch of 10 updates goes bad at its 4th update: step 24
            first_bad = jnp.int32([3])
            bad = {key: jnp.asarray([key == "critic/critic_loss"]) for key in bad}
        return agent, rng, metrics, first_bad, bad

    monkeypatch.setattr(run_module, "fused_updates", poisoned)
    with pytest.raises(
        run_module.NonFiniteLossError, match=r"non-finite critic/critic_loss at offline update step 24"
    ):
        train_module.train(tiny_config(tiny_dataset_dir), tmp_path)
    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert checkpoints == ["20"]


def test_resuming_a_finished_run_changes_nothing(tiny_dataset_dir, tmp_path, caplog):
    """What a requeued job or a re-submitted sweep does: one line, no row, no checkpoint written."""
    train_module.train(tiny_config(tiny_dataset_dir), tmp_path)
    metrics = (tmp_path / "metrics.jsonl").read_bytes()
    checkpoints = {path: path.stat().st_mtime_ns for path in (tmp_path / "checkpoints").rglob("*")}
    with caplog.at_level("INFO", logger="launch.train"):
        run = train_module.train(tiny_config(tiny_dataset_dir, "resume=true"), tmp_path)
    assert run.finished and run.loggers == []
    assert any(
        "the run is complete (step 80); nothing to do" in record.getMessage() for record in caplog.records
    )
    assert (tmp_path / "metrics.jsonl").read_bytes() == metrics
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "checkpoints").rglob("*")} == checkpoints
    extended = train_module.train(tiny_config(tiny_dataset_dir, "resume=true", "online_steps=60"), tmp_path)
    assert extended.counters.env_step == 60 and extended.loggers  # it trained on
    assert [row["step"] for row in rows(tmp_path) if "eval/success" in row][-2:] == [80, 100]
