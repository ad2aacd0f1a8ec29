"""A one-node SLURM cluster on localhost for the tests: Debian's slurm-wlm (slurmctld, slurmd) and munge,
run as root without systemd, every file under one temporary directory, torn down with everything it ran.

Requeue is on (`JobRequeue=1`) and `KillWait` gives a signalled job time to checkpoint before SIGKILL, as a
cluster's preemption grace time does. No accounting daemon: `sacct` is unavailable, so submitit waits for
a job's result file, and a test reads a job's state and restarts from `scontrol show job`.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol")
KILL_WAIT_S = 120  # SIGTERM to SIGKILL: a tiny run's checkpoint takes seconds, a loaded CI machine more


def unavailable() -> str | None:
    """Why a local cluster cannot start here, or None."""
    if not sys.platform.startswith("linux"):
        return "the SLURM tests need Linux"
    missing = [name for name in COMMANDS if shutil.which(name) is None]
    if missing:
        return (
            f"{', '.join(missing)} not found: apt-get install slurm-wlm munge (Debian) runs the SLURM tests"
        )
    if os.geteuid() != 0:
        return "the SLURM tests start slurmd and slurmctld, which need root"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SlurmCluster:
    """slurmctld, slurmd and munged of one node, this machine, as `slurmd -C` describes it."""

    def __init__(self, root: Path):
        self.root = root
        root.chmod(0o711)  # munged refuses a socket in a directory others cannot traverse
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.daemons: list[subprocess.Popen] = []

    def start(self) -> SlurmCluster:
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        socket_path = self.root / "munge.socket"
        self._daemon(
            "munged", "--foreground", "--force", f"--socket={socket_path}", f"--key-file={key}",
            f"--log-file={self.root / 'munged.log'}", f"--pid-file={self.root / 'munged.pid'}",
            f"--seed-file={self.root / 'munged.seed'}",
        )  # fmt: skip
        self._wait(lambda: socket_path.exists(), "munged to create its socket")
        self.conf.write_text(self._configuration(socket_path))
        self._daemon("slurmctld", "-D", "-f", str(self.conf))
        self._daemon("slurmd", "-D", "-f", str(self.conf))
        self._wait(lambda: self.node_state() == "idle", "the node to be idle")
        return self

    def _configuration(self, munge_socket: Path) -> str:
        node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
        node = node.splitlines()[0]  # NodeName=... CPUs=... RealMemory=... (the next line is UpTime)
        name = re.search(r"NodeName=(\S+)", node).group(1)
        state = self.root / "state"
        spool = self.root / "spool"
        state.mkdir()
        spool.mkdir()
        settings = {
            "ClusterName": "chunkrl-tests",
            "SlurmctldHost": name,
            "SlurmUser": "root",
            "SlurmctldPort": _free_port(),
            "SlurmdPort": _free_port(),
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={munge_socket}",
            "StateSaveLocation": state,
            "SlurmdSpoolDir": spool,
            "SlurmctldPidFile": self.root / "slurmctld.pid",
            "SlurmdPidFile": self.root / "slurmd.pid",
            "SlurmctldLogFile": self.root / "slurmctld.log",
            "SlurmdLogFile": self.root / "slurmd.log",
            "ProctrackType": "proctrack/linuxproc",  # no cgroups needed
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_CPU",
            "MpiDefault": "none",
            "SwitchType": "switch/none",
            "AccountingStorageType": "accounting_storage/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "ReturnToService": 2,
            "JobRequeue": 1,
            "KillWait": KILL_WAIT_S,
            "MinJobAge": 3600,  # finished jobs stay in `scontrol show job` for the tests to read
            "SchedulerParameters": "sched_interval=1",
        }
        lines = [f"{key}={value}" for key, value in settings.items()]
        lines += [node, f"PartitionName=tests Nodes={name} Default=YES MaxTime=INFINITE State=UP"]
        return "\n".join(lines) + "\n"

    def _daemon(self, *command: str) -> None:
        log = (self.root / f"{command[0]}.out").open("w")
        self.daemons.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def _wait(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline or any(daemon.poll() is not None for daemon in self.daemons):
                logs = "".join(path.read_text()[-1500:] for path in sorted(self.root.glob("*.log")))
                raise RuntimeError(f"the test SLURM cluster did not start: waited for {what}\n{logs}")
            time.sleep(0.2)

    def scontrol(self, *args: str) -> str:
        return subprocess.run(
            ["scontrol", *args], env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def scancel(self, *args: str) -> None:
        subprocess.run(["scancel", *args], env=self.env, capture_output=True, text=True, check=True)

    def node_state(self) -> str:
        result = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
        return result.stdout.strip()

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job`'s fields (JobState, Restarts, ExitCode, ...)."""
        return dict(re.findall(r"(\w+)=(\S*)", self.scontrol("show", "job", job_id)))

    def stop(self) -> None:
        subprocess.run(["scancel", "--full", "--user", "root"], env=self.env, capture_output=True)
        deadline = time.monotonic() + KILL_WAIT_S
        while self._jobs_alive() and time.monotonic() < deadline:
            time.sleep(0.5)
        for daemon in reversed(self.daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()

    def _jobs_alive(self) -> bool:
        result = subprocess.run(["squeue", "-h", "-t", "R,CG"], env=self.env, capture_output=True, text=True)
        return bool(result.stdout.strip())
