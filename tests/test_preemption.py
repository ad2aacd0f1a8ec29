"""Real signals sent to `python launch/train.py` (preemption/__init__.py): the run checkpoints where
it is, exits with INTERRUPTED_EXIT_CODE, and its resumed run equals the uninterrupted one."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from launch import train as train_module
from preemption import INTERRUPTED_EXIT_CODE, PAUSE_ENV
from tests.helpers import REPO, Launched, compose_config, script_env
from tests.test_train import TINY, rows, tiny_config

# checkpoints at offline steps 30, 40 and env steps 30, 40 (global 70, 80): none at the points signalled
OVERRIDES = ["save_interval=30"]


def untimed(logged: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "time"} for row in logged]


class Training(Launched):
    """`python launch/train.py` on the tiny config in a subprocess, pausing at `pause` (PAUSE_ENV)."""

    def __init__(self, dataset_dir: Path, run_dir: Path, pause: str, *overrides: str):
        args = ["agent=qc_fql", "env=pointmaze", "logger.mode=disabled", f"env.dataset_dir={dataset_dir}"]
        args += ["env.download=false", *TINY, *OVERRIDES, *overrides, f"hydra.run.dir={run_dir}"]
        super().__init__("train.py", *args, **{PAUSE_ENV: pause})

    def signal_at(self, point: str, signum: int) -> None:
        self.wait_for(f"paused at {point}")
        self.process.send_signal(signum)


@pytest.fixture(scope="module")
def uninterrupted(tiny_dataset_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    run = train_module.train(tiny_config(tiny_dataset_dir, *OVERRIDES), run_dir)
    return untimed(rows(run_dir)), run.agent.params


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2], ids=lambda signum: signum.name
)
def test_each_signal_checkpoints_mid_offline_and_a_second_one_does_not_tear_it(
    tiny_dataset_dir, tmp_path, signum
):
    """Signalled after offline step 10 and again while that checkpoint is being saved."""
    training = Training(tiny_dataset_dir, tmp_path, "step:10,save:10")
    training.signal_at("step:10", signum)
    training.signal_at("save:10", signum)
    assert training.exit_code() == INTERRUPTED_EXIT_CODE, "".join(training.output)[-3000:]
    name = signal.Signals(signum).name
    assert any(f"interrupted by {name} at step 10: checkpoint saved" in line for line in training.output)
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["10"]
    assert [row["step"] for row in rows(tmp_path)] == [10]  # the offline losses logged at step 10
    assert not (tmp_path / "run.lock").exists()


@pytest.mark.parametrize(
    "point, signum",
    [
        ("step:20", signal.SIGUSR1),  # offline, after a dispatch and an evaluation
        ("step:63", signal.SIGTERM),  # online env step 23: inside a chunk, updates owed, an episode open
        ("eval:20", signal.SIGINT),  # during the offline evaluation at step 20
        ("eval:60", signal.SIGUSR2),  # during the online evaluation at env step 20
    ],
    ids=["mid-offline", "mid-online-chunk", "during-offline-evaluation", "during-online-evaluation"],
)
def test_a_run_resumed_after_a_signal_equals_the_uninterrupted_run(
    tiny_dataset_dir, tmp_path, uninterrupted, point, signum
):
    training = Training(tiny_dataset_dir, tmp_path, point)
    training.signal_at(point, signum)
    assert training.exit_code() == INTERRUPTED_EXIT_CODE, "".join(training.output)[-3000:]
    step = int(point.split(":")[1])
    assert max(int(path.name) for path in (tmp_path / "checkpoints").iterdir()) == step
    if point.startswith("eval"):  # cut after its first env step (of 15), not run to its end; owed on resume
        name = signal.Signals(signum).name
        assert any(
            f"step {step}: evaluation: interrupted by {name} after 0 of 1 episodes; its results are dropped; "
            "the checkpoint of this step owes it" in line
            for line in training.output
        ), "".join(training.output)[-3000:]
        assert all(row["step"] < step for row in rows(tmp_path) if "eval/success" in row)
    resumed = train_module.train(tiny_config(tiny_dataset_dir, *OVERRIDES, "resume=true"), tmp_path)
    expected_rows, expected_params = uninterrupted
    assert untimed(rows(tmp_path)) == expected_rows
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.agent.params, expected_params)


def signal_paused_jobs(sweep: Path, jobs: int, signum: int, process: subprocess.Popen) -> None:
    """Once `jobs` jobs of the sweep wait at their pause point, `signum` to each (its pid is in its lock)."""
    deadline = time.monotonic() + 300
    while sum(path.read_text().count("paused at") for path in sweep.glob(".submitit/*/*_log.*")) < jobs:
        assert time.monotonic() < deadline and process.poll() is None, "the jobs never reached their pause"
        time.sleep(0.2)
    for lock_file in sweep.glob("*/*/*/run.lock"):
        os.kill(json.loads(lock_file.read_text())["pid"], signum)


@pytest.mark.parametrize(
    "limit",
    [
        pytest.param("signalled", id="signalled"),
        # submitit's own timer: USR2 30 s before a 1-minute limit, so each attempt has 60 s in all, which a
        # loaded 2-core machine can exceed (the restarted job is then signalled and requeued again)
        pytest.param("time limit", id="time-limit", marks=pytest.mark.slow),
    ],
)
def test_a_submitit_multirun_is_requeued_on_its_signal_and_resumes(tiny_dataset_dir, tmp_path, limit):
    """`-m launcher=submitit_local seed=0,1`: each job, waiting after offline step 10, gets USR2 (from the
    test as SLURM would send it, or from submitit's local time limit); it checkpoints, hands the signal to
    submitit, which requeues it, and the restarted job resumes and ends with
    the uninterrupted run's metrics."""
    overrides = [
        "agent=qc_fql",
        "env=pointmaze",
        "logger.mode=disabled",
        f"env.dataset_dir={tiny_dataset_dir}",
        "env.download=false",
        *TINY,
        "offline_steps=20",
        "online_steps=0",
    ]
    env = script_env(**{PAUSE_ENV: "step:10"})
    sweep = tmp_path / "sweep"
    command = [sys.executable, "launch/train.py", "-m", "launcher=submitit_local", "seed=0,1", *overrides]
    command += [
        f"hydra.launcher.timeout_min={1 if limit == 'time limit' else 10}",
        f"hydra.sweep.dir={sweep}",
    ]
    command += ["hydra.launcher.gpus_per_node=0"]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if limit == "signalled":
        signal_paused_jobs(sweep, 2, signal.SIGUSR2, process)
    output = process.communicate(timeout=600)[0]
    job_logs = "".join(path.read_text() for path in sweep.glob(".submitit/*/*_log.*"))
    assert process.returncode == 0, output[-2000:] + job_logs[-4000:]
    assert job_logs.count("interrupted by SIGUSR2 at step 10: checkpoint saved") == 2, job_logs[-4000:]
    assert len(set(re.findall(r"Requeued job (\d+)", job_logs))) == 2, job_logs[-4000:]
    uninterrupted = tmp_path / "uninterrupted"
    train_module.train(compose_config(*overrides, "seed=0"), uninterrupted)
    (seed0,) = sweep.glob("*/*/0_*seed=0/metrics.jsonl")
    (seed1,) = sweep.glob("*/*/1_*seed=1/metrics.jsonl")
    assert untimed(rows(seed0.parent)) == untimed(rows(uninterrupted))
    assert [row["step"] for row in rows(seed1.parent)] == [row["step"] for row in rows(uninterrupted)]


def test_a_vector_of_runs_checkpoints_on_a_signal_after_its_env_workers_started(tiny_dataset_dir, tmp_path):
    """Two runs step their envs in worker processes, which ignore the stop signals; making them (gymnasium
    builds a first env in the trainer, for its spaces) must leave the trainer's handlers in place."""
    training = Training(tiny_dataset_dir, tmp_path, "step:63", "seed=[0,1]")
    training.signal_at("step:63", signal.SIGTERM)
    assert training.exit_code() == INTERRUPTED_EXIT_CODE, "".join(training.output)[-3000:]
    assert any("interrupted by SIGTERM at step 63: checkpoint saved" in line for line in training.output)
    assert max(int(path.name) for path in (tmp_path / "checkpoints").iterdir()) == 63


def test_ctrl_c_while_the_data_loads_stops_before_training_and_a_rerun_is_the_run(
    tiny_dataset_dir, tmp_path, uninterrupted
):
    """SIGINT to the process group, as a terminal's Ctrl-C, once the data is loaded and the agents built."""
    training = Training(tiny_dataset_dir, tmp_path, "load:0")
    training.wait_for("paused at load:0")
    os.killpg(training.process.pid, signal.SIGINT)
    assert training.exit_code() == INTERRUPTED_EXIT_CODE, "".join(training.output)[-3000:]
    line = "interrupted by SIGINT before the first update; nothing written; a rerun starts as this one would"
    assert any(line in output for output in training.output), "".join(training.output)[-3000:]
    assert not (tmp_path / "metrics.jsonl").exists() and not any((tmp_path / "checkpoints").glob("*"))
    train_module.train(tiny_config(tiny_dataset_dir, *OVERRIDES), tmp_path)
    assert untimed(rows(tmp_path)) == uninterrupted[0]
