"""One writer per run directory (launch/reliability/lock.py), with real processes."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launch import train as train_module
from launch.reliability import lock
from tests.helpers import REPO, script_env
from tests.test_train import tiny_config

HOLD = (
    "import sys, time; from pathlib import Path; from launch.reliability import lock\n"
    "with lock.held(Path(sys.argv[1])):\n    print('held', flush=True); sys.stdin.read()"
)


def holder(run_dir: Path) -> subprocess.Popen:
    """A second process holding `run_dir`'s lock until its stdin closes."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)],
        cwd=REPO,
        env=script_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline() == "held\n"
    return process


def test_a_second_process_is_refused_naming_the_first_ones_pid_and_host(tiny_dataset_dir, tmp_path):
    first = holder(tmp_path)
    try:
        with pytest.raises(lock.RunDirLocked) as refusal:
            train_module.train(tiny_config(tiny_dataset_dir), tmp_path)
    finally:
        first.communicate("", timeout=60)
    assert str(refusal.value).startswith(
        f"{tmp_path} is in use by pid {first.pid} on {socket.gethostname()} (lock {tmp_path / 'run.lock'})"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # nothing written; the lock released
    with lock.held(tmp_path):  # free once the first one has exited
        assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_lock_held_by_a_killed_unreaped_process_is_taken_over(tmp_path):
    """Its pid still answers kill(pid, 0) until reaped, but the process is gone (a zombie)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    while Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
    (tmp_path / lock.LOCK_FILE).write_text(json.dumps({"pid": process.pid, "host": socket.gethostname()}))
    with lock.held(tmp_path):
        assert json.loads((tmp_path / lock.LOCK_FILE).read_text())["pid"] == os.getpid()
    process.wait()


@pytest.mark.parametrize(
    "holder_host, age_s, stale",
    [
        ("this host", 0, True),  # its pid is dead
        ("elsewhere", 0, False),  # cannot be checked, and refreshed just now
        ("elsewhere", lock.STALE_S + 60, True),  # not refreshed for longer than STALE_S
    ],
)
def test_a_stale_lock_is_taken_over(tmp_path, holder_host, age_s, stale):
    path = tmp_path / lock.LOCK_FILE
    host = socket.gethostname() if holder_host == "this host" else "elsewhere"
    path.write_text(json.dumps({"pid": dead_pid(), "host": host}))
    os.utime(path, (time.time() - age_s,) * 2)
    if not stale:
        with pytest.raises(lock.RunDirLocked, match="on elsewhere"):
            lock.acquire(tmp_path)
        return
    with lock.held(tmp_path):
        assert json.loads(path.read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}
    assert not path.exists()
