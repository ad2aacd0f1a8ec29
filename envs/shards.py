"""Datasets larger than memory: OGBench's sharded 100M and 1B sets, found on disk, checked, loaded, generated.

Layout, as OGBench publishes them: `<env.dataset_dir>/<stem>-100m-v0/` (or `-1b-v0`), where the standard
file is `<stem>-v0.npz`, holds shards `<stem>-v0-<i>.npz` ordered by the integer i (zero-padded or not);
`-val.npz` files beside them are not trained on. A generated set of another per-shard size gets its own
directory, e.g. `cube-quadruple-play-100m-v0-ep2-len51-s0/`, so it is never taken for the published one.

Each shard is read as a standard dataset file is (envs/datasets.py): checked against the env, loaded by
OGBench's loader and relabelled by OGBench for each task. buffers/stream.py keeps `env.shards_in_memory` of
them in one device store and reads the next with a `shard_loader` on a background thread while updates run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import gymnasium
import numpy as np

from envs.config import SHARDED_SIZES, EnvConfig
from envs.datasets import UNREADABLE_FILE_ERRORS, check_file, load_relabelled, size_suffix
from envs.errors import DatasetError
from envs.generate import generate_dataset, global_numpy_rng_restored
from envs.suite import dataset_name_of, env_id_of

logger = logging.getLogger(__name__)

SHARD_EPISODES = 1000  # train episodes of a published shard, each of OFFICIAL_EPISODE_STEPS steps


def sharded_dir(env_cfg, seed: int) -> Path:
    """`<env.dataset_dir>/<stem>-<env.dataset_size>-v0`, with a size suffix for unofficial shard sizes."""
    cfg = EnvConfig.from_cfg(env_cfg)
    if cfg.dataset_size is None:
        raise ValueError(
            f"env.dataset_size: expected one of {list(SHARDED_SIZES)} for a sharded set, found null"
        )
    stem, version = dataset_name_of(cfg.name).rsplit("-", 1)
    name = f"{stem}-{cfg.dataset_size}-{version}"
    if not cfg.official_size:
        name += size_suffix(cfg.num_episodes, cfg.generate_max_episode_steps, seed)
    return Path(cfg.dataset_dir).expanduser() / name


def shard_file_name(dataset_name: str, index: int) -> str:
    """'cube-quadruple-play-v0-007.npz': the published names pad the index to three digits."""
    return f"{dataset_name}-{index:03d}.npz"


def shard_seed(seed: int, index: int) -> int:
    """The generation seed of shard `index`: a function of (seed, index) alone."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _how_to_get(directory: Path, cfg: EnvConfig, seed: int) -> str:
    overrides = f"env.name={cfg.name} env.dataset_size={cfg.dataset_size} env.dataset_dir={cfg.dataset_dir}"
    if not cfg.official_size:  # the seed names the directory of a set of another shard size
        if cfg.num_episodes is not None:
            overrides += f" env.generate.num_episodes={cfg.num_episodes}"
        if cfg.generate_max_episode_steps is not None:
            overrides += f" env.generate.max_episode_steps={cfg.generate_max_episode_steps}"
        overrides += f" seed={seed}"
    how = f"generate it with `python launch/make_dataset.py {overrides} env.generate.num_shards=N` (it skips "
    how += "complete shards, so rerunning it after an interruption or a deleted shard finishes the set)"
    if cfg.official_size:
        how += (
            f" or download it: `wget -r -np -nH --cut-dirs=2 -A '*.npz' -P {directory.parent} "
            f"https://rail.eecs.berkeley.edu/datasets/ogbench/{directory.name}/`"
        )
    return how


def find_shards(directory: Path, dataset_name: str, how_to_get: str = "") -> list[Path]:
    """The shards `<dataset_name>-<i>.npz` of `directory`, ordered by i, which must run 0, 1, ..., N - 1."""
    pattern = re.compile(rf"{re.escape(dataset_name)}-(\d+)\.npz")
    found = {}
    for path in sorted(directory.glob("*.npz")) if directory.is_dir() else []:
        match = pattern.fullmatch(path.name)
        if match is None:
            continue
        index = int(match.group(1))
        if index in found:
            raise DatasetError(
                f"{directory}: shard index {index} appears twice ({found[index].name} and {path.name}); "
                "expected one file per index"
            )
        found[index] = path
    hint = f"; {how_to_get}" if how_to_get else ""
    if not found:
        raise DatasetError(
            f"{directory}: expected shards '{dataset_name}-<i>.npz' (i = 0, 1, ...), found none{hint}"
        )
    missing = sorted(set(range(max(found) + 1)) - set(found))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise DatasetError(
            f"{directory}: expected shards 0 .. {max(found)} with no gap, found {len(found)}; missing "
            f"indices {shown}{hint}"
        )
    return [found[index] for index in sorted(found)]


def _episodes_and_steps(path: Path, how_to_get: str) -> tuple[int, int]:
    try:
        with np.load(path) as file:
            terminals = file["terminals"]
    except (*UNREADABLE_FILE_ERRORS, KeyError) as error:
        raise DatasetError(
            f"{path} cannot be read as a shard ({type(error).__name__}: {error}); delete it and {how_to_get}"
        ) from error
    return int(np.count_nonzero(terminals)), len(terminals)


def check_equal_shards(paths: Sequence[Path], how_to_get: str = "") -> tuple[int, int]:
    """(episodes, steps) of every shard, read from their terminals; a DatasetError names any odd shard.

    Equal shards have equal transitions and state rows, so each fits the same segment of the device store.
    """
    first = _episodes_and_steps(paths[0], how_to_get)
    for path in paths[1:]:
        found = _episodes_and_steps(path, how_to_get)
        if found != first:
            raise DatasetError(
                f"{path}: {found[1]} steps in {found[0]} episodes, but {paths[0].name} has {first[1]} steps "
                f"in {first[0]} episodes; every shard of {path.parent} must have the same episodes and steps"
            )
    return first


def locate_shards(env_cfg, seed: int) -> list[Path]:
    """The shards of `env_cfg`'s sharded set, ordered and checked to be equal in size (see `find_shards`)."""
    cfg = EnvConfig.from_cfg(env_cfg)
    directory = sharded_dir(env_cfg, seed)
    how_to_get = _how_to_get(directory, cfg, seed)
    paths = find_shards(directory, dataset_name_of(cfg.name), how_to_get)
    episodes, steps = check_equal_shards(paths, how_to_get)
    logger.info(
        "dataset: %d shards of %d steps in %d episodes, %d in memory, a swap every %d updates -> %s",
        len(paths),
        steps,
        episodes,
        cfg.shards_in_memory,
        cfg.shard_interval,
        directory,
    )
    return paths


class _TaskFixed(gymnasium.Wrapper):
    """A single-task env reset once, here; its later resets do nothing, so its task (all that OGBench's
    relabelling reads) stays set and relabelling on a reader thread moves no random generator."""

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        with global_numpy_rng_restored():
            env.reset(seed=0)

    def reset(self, *, seed=None, options=None):
        return None


class ShardLoader:
    """Reads one shard as a standard dataset file is read: `check_file`, then `load_relabelled`.

    names: the single-task env names of the tasks (one domain), in the order of the reward rows.
    Its envs are its own and never stepped; one thread at a time may call it.
    """

    def __init__(self, names: Sequence[str], sparse: bool, how_to_fix: str = ""):
        datasets = {dataset_name_of(name) for name in names}
        if len(datasets) != 1:
            raise ValueError(
                f"shard tasks: expected single-task names of one dataset, found {sorted(datasets)}"
            )
        self.names, self.sparse, self.how_to_fix = list(names), sparse, how_to_fix
        self.envs = [_TaskFixed(gymnasium.make(env_id_of(name))) for name in names]

    def __call__(self, path: Path) -> dict:
        hint = f"delete it and {self.how_to_fix}" if self.how_to_fix else None
        check_file(Path(path), self.envs[0], self.names[0], hint)
        return load_relabelled(Path(path), self.names[0], self.envs, self.sparse)


def shard_loader(env_cfg, seed: int, names: Sequence[str] | None = None) -> ShardLoader:
    """The ShardLoader of `env_cfg`'s sharded set for the tasks `names` (default: `env.name` alone); its
    errors say how to get the set again."""
    cfg = EnvConfig.from_cfg(env_cfg)
    how_to_fix = _how_to_get(sharded_dir(env_cfg, seed), cfg, seed)
    return ShardLoader([cfg.name] if names is None else names, cfg.sparse, how_to_fix)


def generate_shards(env_cfg, seed: int) -> dict:
    """Writes the missing shards 0 .. N - 1 of `env_cfg`'s sharded set with OGBench's oracles.

    Shard i is `generate_dataset` seeded by `shard_seed(seed, i)` (its episodes in parallel over
    `env.generate.workers` processes) under its published name; complete shards are kept, so an interrupted
    generation resumes where it stopped. Returns the directory, the shards written and kept, and the steps/s
    measured over the shards written.
    """
    cfg = EnvConfig.from_cfg(env_cfg)
    directory = sharded_dir(env_cfg, seed)
    dataset_name = dataset_name_of(cfg.name)
    num_shards = cfg.num_shards or SHARDED_SIZES[cfg.dataset_size]
    episodes = cfg.num_episodes or SHARD_EPISODES
    written, kept, steps, seconds = [], [], 0, 0.0
    for index in range(num_shards):
        path = directory / shard_file_name(dataset_name, index)
        if path.is_file():  # train files are renamed into place only when complete (envs/generate.py)
            kept.append(path)
            continue
        stats = generate_dataset(
            dataset_name,
            path,
            num_episodes=episodes,
            max_episode_steps=cfg.generate_max_episode_steps,
            workers=cfg.workers,
            seed=shard_seed(seed, index),
        )
        logger.info(
            "dataset: shard %d/%d written (%.0f steps/s) -> %s",
            index + 1,
            num_shards,
            stats["steps_per_second"],
            path,
        )
        written.append(path)
        steps, seconds = steps + stats["steps"], seconds + stats["seconds"]
    paths = find_shards(directory, dataset_name)
    episodes_found, steps_found = check_equal_shards(paths, _how_to_get(directory, cfg, seed))
    if episodes_found != episodes:
        raise DatasetError(
            f"{directory}: its shards hold {episodes_found} episodes each, expected {episodes} "
            "(env.generate.num_episodes); delete them or choose another env.dataset_dir"
        )
    return dict(
        directory=directory,
        written=written,
        kept=kept,
        shards=len(paths),
        episodes_per_shard=episodes_found,
        steps_per_shard=steps_found,
        steps_per_second=steps / seconds if seconds else None,
        workers=cfg.workers,
    )
