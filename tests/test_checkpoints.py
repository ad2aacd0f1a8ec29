"""Checkpoints that survive the cluster (launch/reliability/checkpoints.py): a torn metrics line or latest
checkpoint, a full disk, a resume that extends the run or asks for what the checkpoint cannot give."""

import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from launch import train as train_module
from launch.reliability.checkpoints import Checkpointer, ResumeRefused
from launch.reliability.disk import WriteFailed
from launch.reliability.logger import Logger
from tests.helpers import train_interrupted
from tests.test_train import rows, tiny_config

# One open episode through the first 20 online steps: a 20-step online replay does not wrap, so a run
# extended from online_steps=20 to 40 is the run of online_steps=40 (checkpoints at global steps 20, 40,
# 60, 80).
LONG_EPISODES = "env.max_episode_steps=30"


def untimed(logged: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "time"} for row in logged]


def config(dataset_dir, *overrides):
    return tiny_config(dataset_dir, LONG_EPISODES, *overrides)


@pytest.fixture(scope="module")
def uninterrupted(tiny_dataset_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    run = train_module.train(config(tiny_dataset_dir), run_dir)
    return run_dir, untimed(rows(run_dir)), run.agent.params


def assert_same_run(run, run_dir, uninterrupted):
    _, expected_rows, expected_params = uninterrupted
    assert untimed(rows(run_dir)) == expected_rows
    jax.tree_util.tree_map(np.testing.assert_array_equal, run.agent.params, expected_params)


def two_steps(directory: Path) -> Checkpointer:
    checkpointer = Checkpointer(directory)
    for step in (10, 20):
        state = {"weights": jnp.full((64,), float(step))}
        checkpointer.save(step, state, {"step": step}, {"seed": 0})
    return checkpointer


def state_files(step_dir: Path) -> list[Path]:
    return sorted((path for path in (step_dir / "state").rglob("*") if path.is_file()), key=os.path.getsize)


@pytest.mark.parametrize(
    "damage", ["truncate the largest state file", "delete the counters", "delete the state"]
)
def test_an_unreadable_latest_checkpoint_falls_back_to_the_previous(tmp_path, caplog, damage):
    two_steps(tmp_path).close()
    latest = tmp_path / "checkpoints" / "20"
    if damage == "truncate the largest state file":
        largest = state_files(latest)[-1]
        largest.write_bytes(largest.read_bytes()[: os.path.getsize(largest) // 2])
    elif damage == "delete the counters":
        (latest / "counters" / "metadata").unlink()
    else:
        for path in state_files(latest):
            path.unlink()
    checkpointer = Checkpointer(tmp_path)
    with caplog.at_level(logging.WARNING, logger="launch.reliability.checkpoints"):
        step, state, counters = checkpointer.restore(lambda config, counters: {"weights": jnp.zeros(64)})
    assert (step, counters) == (10, {"step": 10})
    np.testing.assert_array_equal(state["weights"], np.full(64, 10.0))
    (warning,) = [record.getMessage() for record in caplog.records]
    assert warning.startswith(f"checkpoint step 20 in {tmp_path / 'checkpoints'} is unreadable (")
    assert warning.endswith("resuming from step 10 instead")
    assert checkpointer.latest_step() == 10  # the unreadable one is gone, so step 20 can be saved again
    checkpointer.close()


def test_no_readable_checkpoint_names_each_step(tmp_path):
    two_steps(tmp_path).close()
    for step in ("10", "20"):
        (tmp_path / "checkpoints" / step / "counters" / "metadata").unlink()
    with pytest.raises(
        RuntimeError, match=r"no readable checkpoint in .*checkpoints \(step 20: .*; step 10: "
    ):
        Checkpointer(tmp_path).restore(lambda config, counters: {"weights": jnp.zeros(64)})


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_at_a_metrics_write_names_the_directory_and_free_space(tmp_path, monkeypatch):
    logger = Logger(tmp_path, {}, type("Cfg", (), {"mode": "disabled"}), [])
    monkeypatch.setattr(Path, "open", no_space)
    with pytest.raises(WriteFailed) as failure:
        logger.log({"loss": 1.0}, 10, "offline")
    free = shutil.disk_usage(tmp_path).free / 2**30
    assert str(failure.value) == (
        f"could not write metrics.jsonl in {tmp_path}: No space left on device ({free:.2f} GiB free there)"
    )


def test_a_full_disk_at_a_checkpoint_stops_the_run_and_the_previous_one_resumes(
    tiny_dataset_dir, tmp_path, monkeypatch, uninterrupted
):
    """The disk fills while the counters of step 60 are written, after its arrays: step 40 stays whole."""
    original, saves = ocp.handlers.JsonCheckpointHandler.async_save, {"n": 0}

    async def filling(self, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 5:  # steps 20 and 40 write counters and config: the 5th is step 60's counters
            no_space()
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "async_save", filling)
    with pytest.raises(
        WriteFailed,
        match=r"^could not write checkpoint step 60 in .*/checkpoints: No space left "
        r"on device \(.* GiB free there\); step 40 is intact \(resume=true continues from it\)$",
    ):
        train_module.train(config(tiny_dataset_dir), tmp_path)
    monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "async_save", original)
    checkpointer = Checkpointer(tmp_path)
    assert checkpointer.latest_step() == 40
    checkpointer.close()
    resumed = train_module.train(config(tiny_dataset_dir, "resume=true"), tmp_path)
    assert_same_run(resumed, tmp_path, uninterrupted)


def test_a_torn_metrics_line_and_latest_checkpoint_are_left_behind_on_resume(
    tiny_dataset_dir, tmp_path, monkeypatch, caplog, uninterrupted
):
    """Killed at env step 25 (checkpoints at 40 and 60) mid-write of a metrics row, with step 60's arrays
    torn: the resumed run drops the row, goes back to step 40 and ends where the uninterrupted run does."""
    train_interrupted(train_module.train, config(tiny_dataset_dir), tmp_path, monkeypatch, 5)
    with (tmp_path / "metrics.jsonl").open("a") as file:
        file.write(json.dumps({"step": 65, "phase": "online", "online/episode_return": -3.0})[:20])
    largest = state_files(tmp_path / "checkpoints" / "60")[-1]
    largest.write_bytes(largest.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        resumed = train_module.train(config(tiny_dataset_dir, "resume=true"), tmp_path)
    warnings = [record.getMessage() for record in caplog.records]
    assert any('dropping its torn last line \'{"step": 65, "phase"\'' in warning for warning in warnings)
    assert any("checkpoint step 60" in w and "resuming from step 40 instead" in w for w in warnings)
    assert_same_run(resumed, tmp_path, uninterrupted)


def test_a_run_extended_with_more_online_steps_is_the_longer_run(tiny_dataset_dir, tmp_path, uninterrupted):
    short = train_module.train(config(tiny_dataset_dir, "online_steps=20"), tmp_path)
    assert short.replay.online.actions.shape[1] == 20
    extended = train_module.train(config(tiny_dataset_dir, "resume=true"), tmp_path)
    assert extended.replay.online.actions.shape[1] == 40 and extended.counters.env_step == 40
    assert_same_run(extended, tmp_path, uninterrupted)


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "agent.hidden_dims=[32,32]",
            "cannot change agent.hidden_dims: the checkpoint was trained with "
            "agent.hidden_dims=[16, 16], this run sets [32, 32]",
        ),
        (
            "agent=qc",
            "cannot change agent.algorithm: the checkpoint was trained with "
            "agent.algorithm=qc_fql, this run sets qc",
        ),
        ("online_steps=30", "cannot shrink online_steps: 30 < 40 of the checkpoint"),
        ("offline_steps=60", "cannot change offline_steps to 60: the checkpoint has finished its 40 offline"),
    ],
)
def test_a_resume_the_checkpoint_cannot_honour_is_refused_naming_the_setting(
    tiny_dataset_dir, tmp_path, uninterrupted, override, message
):
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted[0], run_dir)
    with pytest.raises(ResumeRefused, match="^resume=true " + re.escape(message)):
        train_module.train(config(tiny_dataset_dir, "resume=true", override), run_dir)
    assert untimed(rows(run_dir)) == uninterrupted[1]


def test_a_run_dir_holding_glob_characters_is_refused_before_training(tmp_path):
    """Orbax would write checkpoints under `seed=[0, 1]` that it cannot read back (its glob finds no part)."""
    with pytest.raises(ValueError, match=r"seed=\[0, 1\]: its checkpoints could be written but not read"):
        Checkpointer(tmp_path / "seed=[0, 1]")
