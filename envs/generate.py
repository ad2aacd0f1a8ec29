"""Local generation of an OGBench dataset with its scripted oracles, for when the download is unavailable.

Episodes are collected by worker processes started with 'spawn' (MuJoCo is not fork-safe once threads
exist); a visual dataset renders in one worker at least, never in the caller's process (the trainer). Each
episode is seeded from (seed, episode index) alone, so the files are the same for any number of workers.
The first `num_episodes` episodes form the train file and the next max(1, num_episodes // 10) the
validation file (OGBench takes num_episodes // 10; at least one keeps a tiny validation file loadable).
Both files are written under temporary names and renamed into place only once both are complete, so a
final name never holds a half-written file.

Under `handling()` (preemption/__init__.py) a signal stops the generation, and nothing is written:
in-process at the end of the episode in flight; with workers, the parent stops within POLL_S and the
workers, which ignore SIGINT, SIGUSR1 and SIGUSR2 (the parent alone decides), end the episode each holds
and exit. SIGTERM still ends a worker at once, so a group's SIGTERM or a `kill` of it leaves no orphan.
"""

import collections
import concurrent.futures
import concurrent.futures.process
import contextlib
import functools
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

import preemption
from envs import headless, provenance, suite
from envs.errors import DatasetError
from envs.file_format import check_npz_path, val_path_of
from envs.oracles import OFFICIAL_EPISODE_STEPS, OFFICIAL_EPISODES, make_collector

POLL_S = 0.2  # how often the parent, waiting for its workers' next episode, looks for a signal
IN_FLIGHT = 1  # episodes submitted per worker: a stop waits for these to end (2 was no faster, measured)
_IGNORED_IN_WORKERS = (signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)

_worker_collector = None  # each worker process builds its environment and oracles once
_worker_dataset: tuple = ()  # (dataset name, max episode steps) of the worker's collector


def _start_worker(dataset_name: str, max_episode_steps: int) -> None:
    """Born with the stop signals blocked (`_stop_signals_blocked`); ignores all but SIGTERM for good."""
    global _worker_dataset
    for signum in _IGNORED_IN_WORKERS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, preemption.SIGNALS)
    _worker_dataset = (dataset_name, max_episode_steps)


def _collect_in_worker(seed_and_index: tuple[int, int]) -> dict[str, np.ndarray]:
    """The episode, the collector built at the first: an error there (a renderer that cannot start) reaches
    the caller as itself, where one in the pool's initializer would only break the pool."""
    global _worker_collector
    if _worker_collector is None:
        _worker_collector = make_collector(*_worker_dataset)
    return _worker_collector.collect(*seed_and_index)


@contextlib.contextmanager
def global_numpy_rng_restored():
    """The oracles draw from NumPy's global RNG; collecting in-process must not move the caller's stream."""
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


@contextlib.contextmanager
def _stop_signals_blocked():
    """Blocks the stop signals in this thread, so the processes and threads started meanwhile inherit them
    blocked: a Ctrl-C while a worker starts does not kill it, SIGUSR1 never kills multiprocessing's resource
    tracker (which unblocks only SIGINT and SIGTERM, and ignores those), and no thread but the main one
    receives them."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, preemption.SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _result(future: concurrent.futures.Future, stop_if_received: Callable[[], None]):
    """The future's episode, looking for a signal every POLL_S while it runs."""
    while True:
        stop_if_received()
        try:
            return future.result(timeout=POLL_S)
        except concurrent.futures.TimeoutError:
            continue
        except headless.RendererMissing as missing:  # a visual set's worker: its one line, not its traceback
            raise headless.RendererMissing(str(missing)) from None
        except concurrent.futures.process.BrokenProcessPool:
            stop_if_received()  # a worker ended by the SIGTERM sent to the whole process group
            raise


def _episodes(
    dataset_name: str,
    max_episode_steps: int,
    seed: int,
    total: int,
    workers: int,
    stop_if_received: Callable[[int], None],
):
    """Yields episodes 0 .. total - 1 in order; calls `stop_if_received(episodes done)` at each safe point.
    One worker collects in-process, except a visual dataset's: it renders, and the trainer never does."""
    if workers == 1 and not suite.is_visual(dataset_name):
        collector = make_collector(dataset_name, max_episode_steps)
        with global_numpy_rng_restored():
            for index in range(total):
                stop_if_received(index)
                yield collector.collect(seed, index)
        return
    with _stop_signals_blocked():  # also multiprocessing's resource tracker, which it may start
        executor = concurrent.futures.ProcessPoolExecutor(
            workers,
            multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(dataset_name, max_episode_steps),
        )
    futures: collections.deque = collections.deque()
    try:
        for index in range(total):
            while len(futures) < min(IN_FLIGHT * workers, total - index):
                with _stop_signals_blocked():
                    futures.append(executor.submit(_collect_in_worker, (seed, index + len(futures))))
            yield _result(futures.popleft(), functools.partial(stop_if_received, index))
    finally:
        executor.shutdown(cancel_futures=True)


def _write_npz(file, arrays: dict[str, np.ndarray]) -> None:
    np.savez_compressed(file, **arrays)


def _write_pair(path: Path, train: dict[str, np.ndarray], val: dict[str, np.ndarray]) -> None:
    """Writes both files under temporary names and renames them only once both are written."""
    # The val file goes into place first, so a train file (what resolution looks for) never lacks one.
    targets = [(val_path_of(path), val), (path, train)]
    temporaries = {target: target.with_name(f".{target.name}.{os.getpid()}.tmp") for target, _ in targets}
    try:
        for target, arrays in targets:
            with open(temporaries[target], "wb") as file:
                _write_npz(file, arrays)
        for target, _ in targets:
            os.replace(temporaries[target], target)
    finally:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)


def generate_dataset(
    dataset_name: str,
    path: Path,
    *,
    num_episodes: int | None,
    max_episode_steps: int | None,
    workers: int,
    seed: int,
) -> dict:
    """Collects `dataset_name` (e.g. 'cube-double-play-v0') into `path` and its '-val.npz' file.

    `num_episodes` and `max_episode_steps` None mean the published size. Returns what was measured:
    episodes, val_episodes, max_episode_steps, steps (train + validation), seconds, steps_per_second
    (collection, including start-up), workers, path and val_path.
    """
    path = Path(path)
    check_npz_path(path)
    if num_episodes is None:
        if dataset_name not in OFFICIAL_EPISODES:
            raise DatasetError(
                f"no published size is known for '{dataset_name}' (known: {', '.join(OFFICIAL_EPISODES)}); "
                "set env.generate.num_episodes"
            )
        num_episodes = OFFICIAL_EPISODES[dataset_name]
    max_episode_steps = max_episode_steps or OFFICIAL_EPISODE_STEPS
    num_val_episodes = max(1, num_episodes // 10)
    total = num_episodes + num_val_episodes
    workers = min(workers, total)

    def stop_if_received(done: int) -> None:
        progress, kept = f"after {done} of {total} episodes", "nothing written, a rerun starts anew"
        preemption.pause_for_tests("generate", done)
        preemption.stop_if_received(f"generating {path.name}", progress, kept)

    start = time.perf_counter()
    arrays = None
    with contextlib.closing(
        _episodes(dataset_name, max_episode_steps, seed, total, workers, stop_if_received)
    ) as episodes:
        for index, episode in enumerate(tqdm(episodes, total=total, desc=dataset_name, unit="episode")):
            if arrays is None:  # every episode runs to the time limit, so one allocation holds them all
                arrays = {
                    k: np.empty((total * max_episode_steps, *v.shape[1:]), v.dtype)
                    for k, v in episode.items()
                }
            for key, value in episode.items():
                arrays[key][index * max_episode_steps : (index + 1) * max_episode_steps] = value
    seconds = time.perf_counter() - start

    split = num_episodes * max_episode_steps
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_pair(path, {k: v[:split] for k, v in arrays.items()}, {k: v[split:] for k, v in arrays.items()})
    stats = dict(
        path=path,
        val_path=val_path_of(path),
        episodes=num_episodes,
        val_episodes=num_val_episodes,
        max_episode_steps=max_episode_steps,
        steps=total * max_episode_steps,
        seconds=seconds,
        steps_per_second=total * max_episode_steps / seconds,
        workers=workers,
    )
    provenance.mark_generated(path, dataset_name, seed, stats)
    return stats
