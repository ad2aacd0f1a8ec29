"""A run stopped by the cluster keeps everything but the update in flight.

A package of its own, below launch/ and envs/: the train loop and dataset generation (envs/generate.py) both
stop at a signal, and envs/ never imports launch/ (tests/test_imports.py).

SLURM preempts with SIGTERM and warns of a time limit with `--signal` (USR1 or USR2; submitit uses USR2);
Ctrl-C is SIGINT. The handler only records the signal: the train loop checks it after each dispatch, env
step and evaluation, saves a checkpoint there, closes its loggers and raises `Interrupted`; the entry point
then exits with INTERRUPTED_EXIT_CODE. A signal arriving during that save is only recorded too, so it cannot
tear the checkpoint. Work outside the loop (generating a dataset) checks for a signal at its own safe points
with `stop_if_received`, which raises `Interrupted` saying what was interrupted and what was kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
# sysexits.h EX_TEMPFAIL: "a temporary failure; the user is invited to retry" (here: resume=true)
INTERRUPTED_EXIT_CODE = 75
# For tests, a comma-separated list of points where the run waits, the k-th until k signals have arrived, so
# that a test signals a run at a known point without timing it: "step:N" the check after global step N,
# "load:0" once the data is loaded and the agents built, "eval:N" the start of the evaluation at step N,
# "save:N" the start of the checkpoint of step N, "generate:N" a dataset's generation once N episodes are
# collected.
PAUSE_ENV = "CHUNKRL_PAUSE_AT"

_received: list[int] = []
_previous: dict[int, object] = {}


class Interrupted(Exception):
    """Raised by the train loop once its checkpoint is saved, naming the signal and the step; or, `step`
    None, by work outside the loop (`stop_if_received`), its `message` saying what was stopped and kept."""

    def __init__(self, signum: int, step: int | None = None, message: str | None = None):
        super().__init__(message or f"interrupted by {signal.Signals(signum).name} at step {step}")
        self.signum, self.step = signum, step


def _record(signum: int, frame) -> None:
    _received.append(signum)


def received() -> int | None:
    """The first signal received since `handling()` began, if any."""
    return _received[0] if _received else None


@contextlib.contextmanager
def handling():
    """Record SIGNALS instead of dying of them, for the duration (the previous handlers are kept for
    `hand_over`). Outside the main thread, where Python cannot set handlers, signals act as before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    _previous.clear()
    _previous.update({signum: signal.signal(signum, _record) for signum in SIGNALS})
    try:
        yield
    finally:
        for signum, handler in _previous.items():
            signal.signal(signum, handler)
        _received.clear()  # a later `stop_if_received` outside `handling()` must not see these


def stop_if_received(doing: str, progress: str, kept: str) -> None:
    """A safe point outside the train loop: once a signal has arrived under `handling()`, raise `Interrupted`
    with '<doing>: interrupted by SIGINT <progress>; <kept>'. Without `handling()` it never raises."""
    signum = received()
    if signum is not None:
        name = signal.Signals(signum).name
        raise Interrupted(signum, message=f"{doing}: interrupted by {name} {progress}; {kept}")


def hand_over(signum: int) -> None:
    """Call the handler that `handling()` replaced for `signum`, if it was a Python one: submitit's USR2
    handler requeues the job (and exits) now that the checkpoint is saved."""
    handler = _previous.get(signum)
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signum, None)


def pause_for_tests(where: str, step: int) -> None:
    """Wait here if PAUSE_ENV names this point (`where`:`step`), the k-th, until k signals have arrived."""
    points = os.environ.get(PAUSE_ENV, "").split(",")
    if f"{where}:{step}" not in points:
        return
    signals = points.index(f"{where}:{step}") + 1
    log.info("paused at %s:%d until signal %d (%s)", where, step, signals, PAUSE_ENV)
    while len(_received) < signals:
        time.sleep(0.02)
