"""Local generation of an OGBench dataset with its scripted oracles, for when the download is unavailable.

Episodes are collected by worker processes started with 'spawn' (MuJoCo is not fork-safe once threads
exist). Each episode is seeded from (seed, episode index) alone, so the files are the same for any number
of workers. The first `num_episodes` episodes form the train file and the next max(1, num_episodes // 10)
the validation file (OGBench takes num_episodes // 10; at least one keeps a tiny validation file loadable).
Both files are written under temporary names and renamed into place only once both are complete, so a
final name never holds a half-written file.
"""

import contextlib
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from envs import provenance
from envs.errors import DatasetError
from envs.file_format import check_npz_path, val_path_of
from envs.oracles import OFFICIAL_EPISODE_STEPS, OFFICIAL_EPISODES, make_collector

_worker_collector = None  # each worker process builds its environment and oracles once


def _start_worker(dataset_name: str, max_episode_steps: int) -> None:
    global _worker_collector
    _worker_collector = make_collector(dataset_name, max_episode_steps)


def _collect_in_worker(seed_and_index: tuple[int, int]) -> dict[str, np.ndarray]:
    return _worker_collector.collect(*seed_and_index)


@contextlib.contextmanager
def global_numpy_rng_restored():
    """The oracles draw from NumPy's global RNG; collecting in-process must not move the caller's stream."""
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


def _episodes(dataset_name: str, max_episode_steps: int, seed: int, total: int, workers: int):
    """Yields episodes 0 .. total - 1 in order."""
    if workers == 1:
        collector = make_collector(dataset_name, max_episode_steps)
        with global_numpy_rng_restored():
            for index in range(total):
                yield collector.collect(seed, index)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_start_worker, initargs=(dataset_name, max_episode_steps)) as pool:
        yield from pool.imap(_collect_in_worker, [(seed, index) for index in range(total)])


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

    start = time.perf_counter()
    episodes = _episodes(dataset_name, max_episode_steps, seed, total, workers)
    arrays = None
    for index, episode in enumerate(tqdm(episodes, total=total, desc=dataset_name, unit="episode")):
        if arrays is None:  # every episode runs to the time limit, so one allocation holds them all
            arrays = {
                k: np.empty((total * max_episode_steps, *v.shape[1:]), v.dtype) for k, v in episode.items()
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
