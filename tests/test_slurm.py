"""`launcher=slurm` (configs/launcher/slurm.yaml) against a real SLURM: Debian's slurm-wlm on a one-node
cluster on this machine (tests/slurm_cluster.py), jobs submitted by hydra-submitit-launcher as on a cluster.

Each job trains the tiny 2-seed vector (one job, two runs) of tests/test_preemption.py. Interrupted jobs
wait at online env step 23 (global step 63: inside a chunk, updates owed, episodes open) until the scheduler
signals them, so the checkpoint is taken where the signal lands; every finished job's metrics must equal
the same command run locally, uninterrupted.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launch import train as train_module
from preemption import INTERRUPTED_EXIT_CODE, PAUSE_ENV
from tests.helpers import REPO, compose_config, script_env
from tests.slurm_cluster import SlurmCluster, unavailable
from tests.test_preemption import OVERRIDES, untimed
from tests.test_train import TINY, rows

# one cluster for the module: its tests run on one xdist worker (`--dist loadgroup`)
pytestmark = pytest.mark.xdist_group("slurm")

PAUSE = "step:63"
CHECKPOINT = "63"
VECTOR = ["agent=qc_fql", "env=pointmaze", "logger.mode=disabled", "env.download=false", "seed=[0,1]"]
# one CPU and a little memory per job, no GPU; a short warning delay as `--signal=USR2@30`
JOB = [
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.timeout_min=30",
    "hydra.launcher.signal_delay_s=30",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable()
    if reason:
        if os.environ.get("CI") == "true":  # .ci/run installs slurm-wlm: there these tests must run
            pytest.fail(f"the SLURM tests must run in CI: {reason}")
        pytest.skip(reason)
    slurm = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    yield slurm
    slurm.stop()


@pytest.fixture(scope="module")
def local(tiny_dataset_dir, tmp_path_factory) -> dict[str, list[dict]]:
    """The vector trained in this process: each member's metrics rows, by member directory name."""
    run_dir = tmp_path_factory.mktemp("local")
    train_module.train(
        compose_config(*VECTOR, f"env.dataset_dir={tiny_dataset_dir}", *TINY, *OVERRIDES), run_dir
    )
    return member_rows(run_dir)


def member_rows(run_dir: Path) -> dict[str, list[dict]]:
    return {path.parent.name: untimed(rows(path.parent)) for path in sorted(run_dir.glob("*/metrics.jsonl"))}


class Submitted:
    """`python launch/train.py -m launcher=slurm <the vector>` from the login node (this process's child),
    which submits one job and waits for its result; `pause` holds the job at a point until signalled."""

    def __init__(self, cluster: SlurmCluster, dataset_dir: Path, sweep: Path, pause: str | None = None):
        self.cluster, self.sweep = cluster, sweep
        command = [sys.executable, "launch/train.py", "-m", "launcher=slurm", *VECTOR, *TINY, *OVERRIDES]
        command += [f"env.dataset_dir={dataset_dir}", f"hydra.sweep.dir={sweep}", *JOB]
        variables = {PAUSE_ENV: pause} if pause else {}
        self.launcher = subprocess.Popen(
            command,
            cwd=REPO,
            env={**script_env(**variables), "SLURM_CONF": cluster.env["SLURM_CONF"]},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    @property
    def job_id(self) -> str:
        self._until(lambda: any(self.sweep.glob(".submitit/*/*_submitted.pkl")), "the job's submission")
        return next(self.sweep.glob(".submitit/*/*_submitted.pkl")).parent.name

    def log(self) -> str:
        return "".join(path.read_text() for path in sorted(self.sweep.glob(".submitit/*/*_log.*")))

    def wait_for(self, text: str, count: int = 1) -> None:
        self._until(lambda: self.log().count(text) >= count, repr(text))

    def _until(self, done, what: str, timeout: float = 420) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert self.launcher.poll() is None, f"the launcher exited before {what}:\n{self.output()}"
            assert time.monotonic() < deadline, f"waited {timeout} s for {what}:\n{self.log()[-3000:]}"
            time.sleep(0.2)

    def start_requeued_now(self) -> None:
        """A requeued job waits 2 minutes before it is eligible again (Slurm's BeginTime); start it now."""
        self._until(lambda: self.cluster.job(self.job_id)["JobState"] == "PENDING", "the job to be requeued")
        self.cluster.scontrol("update", f"JobId={self.job_id}", "StartTime=now")

    def finish(self, timeout: float = 420) -> int:
        try:
            self.launcher.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.launcher.kill()
            raise AssertionError(f"the launcher did not return:\n{self.log()[-3000:]}") from None
        return self.launcher.returncode

    def reaches(self, state: str) -> None:
        """Until `scontrol show job` says `state` (a job's result is written a moment before it ends)."""
        deadline = time.monotonic() + 120
        while (now := self.cluster.job(self.job_id)["JobState"]) != state:
            assert time.monotonic() < deadline, f"the job is {now}, not {state}:\n{self.log()[-3000:]}"
            time.sleep(0.2)

    def output(self) -> str:
        return self.launcher.stdout.read() if self.launcher.poll() is not None else ""

    def runs(self) -> dict[str, list[dict]]:
        (job_dir,) = {path.parent.parent for path in self.sweep.glob("**/*/metrics.jsonl")}
        return member_rows(job_dir)

    def checkpoints(self) -> list[str]:
        (directory,) = self.sweep.glob("**/checkpoints")
        return sorted(path.name for path in directory.iterdir())


def test_a_vector_job_runs_to_the_end_and_equals_the_local_run(cluster, tiny_dataset_dir, tmp_path, local):
    job = Submitted(cluster, tiny_dataset_dir, tmp_path / "sweep")
    assert job.finish() == 0, job.output()[-3000:] + job.log()[-3000:]
    job.reaches("COMPLETED")
    assert list(local) == ["seed=0", "seed=1"]
    assert job.runs() == local


@pytest.mark.parametrize(
    "interrupt, signal_name",
    [
        # preemption by the scheduler: SIGTERM to every process of the job, which Slurm requeues itself
        (lambda cluster, job_id: cluster.scontrol("requeue", job_id), "SIGTERM"),
        # the time-limit warning exactly as `sbatch --signal=USR2@30` delivers it (to the job steps, not the
        # batch shell), sent now instead of 30 s before a limit: submitit hands it to `scontrol requeue`
        (lambda cluster, job_id: cluster.scancel("--signal=USR2", job_id), "SIGUSR2"),
    ],
    ids=["scontrol-requeue", "time-limit-warning"],
)
def test_an_interrupted_job_checkpoints_is_requeued_and_resumes_exactly(
    cluster, tiny_dataset_dir, tmp_path, local, interrupt, signal_name
):
    job = Submitted(cluster, tiny_dataset_dir, tmp_path / "sweep", pause=PAUSE)
    job.wait_for(f"paused at {PAUSE}")
    interrupt(cluster, job.job_id)
    job.wait_for(f"interrupted by {signal_name} at step 63: checkpoint saved")
    job.start_requeued_now()
    assert job.finish() == 0, job.output()[-3000:] + job.log()[-3000:]
    job.reaches("COMPLETED")
    assert cluster.job(job.job_id)["Restarts"] == "1"
    assert "resumed from step 63" in job.log(), job.log()[-3000:]
    assert job.runs() == local


def test_scancel_leaves_a_checkpoint_and_exits_as_interrupted(cluster, tiny_dataset_dir, tmp_path):
    job = Submitted(cluster, tiny_dataset_dir, tmp_path / "sweep", pause=PAUSE)
    job.wait_for(f"paused at {PAUSE}")
    cluster.scancel(job.job_id)
    job.wait_for("interrupted by SIGTERM at step 63: checkpoint saved")
    job.reaches("CANCELLED")
    job.wait_for("Exited with exit code")  # srun's line for the training process
    job.launcher.kill()  # without accounting, submitit cannot learn that a cancelled job is over
    assert CHECKPOINT in job.checkpoints()
    assert re.findall(r"Exited with exit code (\d+)", job.log()) == [str(INTERRUPTED_EXIT_CODE)]
