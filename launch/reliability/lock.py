"""One writer per run directory: a requeued job racing its predecessor, or a command typed twice, must not
interleave two runs' checkpoints and metrics.

The lock is a file holding the writer's pid and host, created exclusively and refreshed every
HEARTBEAT_S by a thread. It is stale, and taken over, when its pid is dead on this host or, from another
host (where the pid cannot be checked), when it has not been refreshed for STALE_S.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
HEARTBEAT_S = 30.0
STALE_S = 300.0


class RunDirLocked(RuntimeError):
    """Another live process writes to this run directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Killed but not yet reaped: a killed trainer whose parent died with it, under an init that does not
    reap orphans (some containers), keeps its pid while it can never write again."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (not Linux), or reaped meanwhile
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _stale(holder: dict, age_s: float) -> bool:
    if holder.get("host") == socket.gethostname():
        return not _alive(int(holder["pid"]))
    return age_s > STALE_S


def _read(path: Path) -> tuple[dict, float] | None:
    try:
        return json.loads(path.read_text()), time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    except ValueError:  # a lock torn by a kill mid-write: as good as no holder
        return {}, float("inf")


def acquire(run_dir: Path) -> Path:
    """The lock of `run_dir`, taken for this process; RunDirLocked naming the holder if it is live."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    while True:
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            found = _read(path)
            if found is None:
                continue  # released meanwhile
            holder, age_s = found
            if not _stale(holder, age_s):
                raise RunDirLocked(
                    f"{run_dir} is in use by pid {holder['pid']} on {holder['host']} (lock {path}): one "
                    "process writes a run dir; wait for it, or delete the lock if that process is gone"
                ) from None
            log.warning("taking over the stale lock of pid %s on %s", holder.get("pid"), holder.get("host"))
            aside = path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, aside)
                if (_read(aside) or ({}, 0))[0] != holder:  # another process took it over first: give it back
                    with contextlib.suppress(FileExistsError):
                        os.link(aside, path)
                aside.unlink()
            continue
        with os.fdopen(descriptor, "w") as file:
            file.write(me)
        return path


@contextlib.contextmanager
def held(run_dir: Path):
    """`run_dir`'s lock for the duration, refreshed by a heartbeat thread, released at the end."""
    path = acquire(run_dir)
    stop = threading.Event()

    def heartbeat():
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(path)

    thread = threading.Thread(target=heartbeat, name="run-dir-lock", daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
