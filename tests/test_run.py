"""A vector of runs' state and operations (launch/engine/run.py): a NaN stops the run, naming the step and
metric, and keeps the last good checkpoint."""

import jax.numpy as jnp
import pytest

from launch import train as train_module
from launch.engine import run as run_module
from tests.test_train import tiny_config


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
