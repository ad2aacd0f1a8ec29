"""Finding, checking and loading the offline dataset of a single-task OGBench env.

The train file (its '-val.npz' file beside it) is resolved in this order, and the source used is logged:
  1. `env.dataset_path`, when set; it must exist.
  2. `<env.dataset_dir>/<published file>`, when it exists; used as is (the published data is preferred).
  3. `<env.dataset_dir>/<generated file>`, when it exists; used as is.
  4. OGBench's own download into the published file, only for the published size and when `env.download`,
     with a bounded socket timeout; on any network failure the partial files are removed.
  5. Generation with OGBench's scripted oracles (envs/generate.py) into the generated file. The locomotion
     data (antmaze, humanoidmaze: OGBench collected it with expert policies) cannot be generated: without
     the download a run fails with one line naming the path the published file would take.

The published file is OGBench's name (e.g. 'cube-double-play-v0.npz'), for the published size only (both
`env.generate.num_episodes` and `env.generate.max_episode_steps` null). A generated file never takes it: at
the published size it is 'cube-double-play-v0-generated-s0.npz' (s: the seed); any other size encodes the
size, e.g. 'cube-double-play-v0-ep20-s0.npz' or 'cube-double-play-v0-ep4-len201-s0.npz'. Every generated
file also carries a sidecar record (envs/provenance.py), so a run can tell, and record, which data it saw.

A file is checked against its env before OGBench's loader sees it, so bad data (a NaN or inf anywhere
included) fails with one DatasetError naming the file and the mismatch. Rewards and masks are OGBench's own
single-task relabelling. The shards of a sharded set (envs/shards.py) go through the same check and loader.
"""

import contextlib
import fcntl
import http.client
import logging
import socket
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import gymnasium
import numpy as np
import ogbench
import ogbench.relabel_utils
import ogbench.utils

from envs.config import EnvConfig
from envs.errors import DatasetError
from envs.file_format import check_npz_path, file_dtype, val_path_of
from envs.generate import generate_dataset
from envs.observations import observation_array, observation_dtype
from envs.oracles import can_generate
from envs.suite import (
    dataset_file_name,
    dataset_name_of,
    env_id_of,
    make_env,
    make_offline_env,
    sparse_rewards,
)

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 30.0
DATASET_KEYS = ("observations", "actions", "rewards", "masks", "terminals", "next_observations")
UNREADABLE_FILE_ERRORS = (zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error)


class ResolvedDataset(NamedTuple):
    path: Path  # the train file; its validation file is beside it
    source: str  # "explicit", "existing", "downloaded" or "generated"
    generation: dict | None  # what `generate_dataset` measured, when the source is "generated"


def size_suffix(num_episodes: int | None, max_episode_steps: int | None, seed: int) -> str:
    """What sets a generated dataset apart from the published size, e.g. '-ep20-s0' or '-ep4-len201-s0'."""
    episodes = f"-ep{num_episodes}" if num_episodes else ""
    length = f"-len{max_episode_steps}" if max_episode_steps else ""
    return f"{episodes}{length}-s{seed}"


def sized_file_name(name: str, num_episodes: int | None, max_episode_steps: int | None, seed: int) -> str:
    """The file of a dataset that is not the published size, e.g. 'cube-double-play-v0-ep20-s0.npz'."""
    return f"{dataset_name_of(name)}{size_suffix(num_episodes, max_episode_steps, seed)}.npz"


def generated_file_name(name: str, seed: int) -> str:
    """The file of a generated dataset of the published size, e.g. 'cube-double-play-v0-generated-s0.npz'."""
    return f"{dataset_name_of(name)}-generated-s{seed}.npz"


@contextlib.contextmanager
def _exclusive(path: Path):
    """A lock beside `path`, so runs launched together generate a missing dataset once, not once each."""
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _download(dataset_name: str, path: Path) -> bool:
    """OGBench's download of `dataset_name` next to `path`; False, with no partial file left, on failure."""
    files = (path, val_path_of(path))
    present_before = {file for file in files if file.exists()}
    timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        ogbench.download_datasets([dataset_name], str(path.parent))
        return True
    except (OSError, http.client.HTTPException) as error:
        logger.warning("dataset: downloading %s failed (%s)", dataset_name, error)
        for file in files:
            Path(f"{file}.tmp").unlink(missing_ok=True)
            if file not in present_before:  # generation writes both files; half a downloaded pair must go
                file.unlink(missing_ok=True)
        return False
    finally:
        socket.setdefaulttimeout(timeout)


def _download_or_generate(cfg: EnvConfig, published: Path | None, path: Path, seed: int) -> ResolvedDataset:
    """Downloads into `published` (None: not the published size), else generates into `path`."""
    if published is not None and cfg.download and _download(dataset_name_of(cfg.name), published):
        logger.info("dataset: downloaded from OGBench's server -> %s", published)
        return ResolvedDataset(published, "downloaded", None)
    if published is not None and not can_generate(dataset_name_of(cfg.name)):
        tried = "the download failed (no network?)" if cfg.download else "env.download is false"
        raise DatasetError(
            f"{dataset_name_of(cfg.name)}: {tried} and OGBench's scripted oracles cannot generate it (its "
            f"data needs expert policies); put the published file at {published} or pass env.dataset_path"
        )
    logger.info(
        "dataset: generating %s locally with OGBench's scripted oracles into %s (workers=%d; "
        "env.generate.workers=N uses N processes)",
        dataset_name_of(cfg.name),
        path,
        cfg.workers,
    )
    stats = generate_dataset(
        dataset_name_of(cfg.name),
        path,
        num_episodes=cfg.num_episodes,
        max_episode_steps=cfg.generate_max_episode_steps,
        workers=cfg.workers,
        seed=seed,
    )
    logger.info(
        "dataset: generated locally with OGBench's scripted oracles (%d + %d validation episodes of %d "
        "steps, seed %d, %.0f steps/s, workers=%d) -> %s",
        stats["episodes"],
        stats["val_episodes"],
        stats["max_episode_steps"],
        seed,
        stats["steps_per_second"],
        stats["workers"],
        path,
    )
    return ResolvedDataset(path, "generated", stats)


def locate_dataset(env_cfg, seed: int) -> ResolvedDataset:
    """Resolves the train file for `env_cfg`, downloading or generating it when needed; logs the source."""
    cfg = EnvConfig.from_cfg(env_cfg)
    if cfg.dataset_path is not None:
        path = Path(cfg.dataset_path).expanduser()
        check_npz_path(path)
        if not path.is_file():
            raise DatasetError(f"env.dataset_path {path}: expected an OGBench .npz file, found no file there")
        logger.info("dataset: explicit env.dataset_path -> %s", path)
        return ResolvedDataset(path, "explicit", None)

    directory = Path(cfg.dataset_dir).expanduser()
    if cfg.official_size:
        published = directory / dataset_file_name(cfg.name)
        path = directory / generated_file_name(cfg.name, seed)
        check_npz_path(published)
    else:
        published = None
        path = directory / sized_file_name(cfg.name, cfg.num_episodes, cfg.generate_max_episode_steps, seed)
    check_npz_path(path)
    candidates = [file for file in (published, path) if file is not None]
    if not any(file.is_file() for file in candidates):  # an existing file needs no lock (read-only dirs)
        directory.mkdir(parents=True, exist_ok=True)
        with _exclusive(path):
            if not any(file.is_file() for file in candidates):  # another run may have made it meanwhile
                return _download_or_generate(cfg, published, path, seed)
    existing = next(file for file in candidates if file.is_file())
    if existing == path and published is not None:
        logger.warning(
            "dataset: %s was generated locally, not OGBench's published data; put the published file at %s "
            "to train on it",
            path,
            published,
        )
    logger.info("dataset: existing file, used as is -> %s", existing)
    return ResolvedDataset(existing, "existing", None)


def _how_to_regenerate(path: Path, name: str) -> str:
    val_path = val_path_of(path)
    return (
        f"delete {path} and {val_path} and the next run downloads or regenerates them, e.g. `rm -f {path} "
        f"{val_path} && python launch/make_dataset.py env.name={name}` (with your env.dataset_dir and "
        "env.generate overrides)"
    )


def _first_non_finite_row(array: np.ndarray) -> int | None:
    """The first row of a float array holding a NaN or an infinity, or None."""
    if not np.issubdtype(array.dtype, np.floating):
        return None
    bad = ~np.isfinite(array).reshape(len(array), -1).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else None


def check_file(path: Path, env: gymnasium.Env, name: str, how_to_fix: str | None = None) -> tuple[int, int]:
    """Raises DatasetError unless `path` holds a well-formed dataset for `env`; returns (episodes, steps).

    `how_to_fix` ends the message of a missing or unreadable file (default: how to regenerate it).
    """
    how_to_fix = _how_to_regenerate(path, name) if how_to_fix is None else how_to_fix
    if not path.is_file():
        raise DatasetError(f"{path}: expected a dataset file, found none; {how_to_fix}")
    required = ["observations", "actions", "terminals", "qpos", "qvel"]
    if hasattr(env.unwrapped, "_cur_button_states"):
        required.append("button_states")  # OGBench's single-task rewards read the buttons' states
    try:
        with np.load(path) as file:
            found = sorted(file.files)
            arrays = {key: file[key] for key in required if key in found}
    except UNREADABLE_FILE_ERRORS as error:
        raise DatasetError(
            f"{path} cannot be read ({type(error).__name__}: {error}); it is probably truncated or corrupt: "
            f"{how_to_fix}"
        ) from error
    missing = sorted(set(required) - set(found))
    if missing:
        raise DatasetError(f"{path}: missing keys {missing}; expected {required}, found {found}")

    for key, array in arrays.items():
        expected = file_dtype(key, env.observation_space.dtype)
        if array.dtype != expected:
            raise DatasetError(f"{path}: '{key}' has dtype {array.dtype}, expected {expected}")
        ndim = (
            1 if key == "terminals" else 1 + len(env.observation_space.shape) if key == "observations" else 2
        )
        if array.ndim != ndim:
            raise DatasetError(f"{path}: '{key}' has shape {array.shape}, expected {ndim} dimensions")
    lengths = {key: len(array) for key, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetError(f"{path}: inconsistent lengths {lengths}, expected one length (steps) for all")
    for key, space in (("observations", env.observation_space), ("actions", env.action_space)):
        if arrays[key].shape[1:] != space.shape:
            raise DatasetError(
                f"{path}: '{key}' have shape {arrays[key].shape[1:]} per step, expected {space.shape} "
                f"(the {name} env's {key[:-1]} space)"
            )
    for key, array in arrays.items():
        row = _first_non_finite_row(array)
        if row is not None:
            raise DatasetError(
                f"{path}: '{key}' holds a non-finite value (NaN or inf) first at row {row} "
                f"({key}[{row}] = {array[row]}); expected finite numbers everywhere"
            )
    terminals = arrays["terminals"]
    if len(terminals) == 0 or not terminals[-1]:
        raise DatasetError(
            f"{path}: expected 'terminals' to end an episode on the last step, found {terminals[-5:]}"
        )
    return int(terminals.sum()), len(terminals)


def validate_dataset(path: Path, env: gymnasium.Env, name: str) -> dict:
    """Checks the train file and its validation file against `env`; returns their episode and step counts."""
    path = Path(path)
    train_episodes, train_steps = check_file(path, env, name)
    val_episodes, val_steps = check_file(val_path_of(path), env, name)
    return dict(
        train_episodes=train_episodes, train_steps=train_steps, val_episodes=val_episodes, val_steps=val_steps
    )


def load_relabelled(path: Path, name: str, task_envs: Sequence[gymnasium.Env], sparse: bool) -> dict:
    """The transitions of one checked file as OGBench's loader makes them, rewarded for each env's task.

    Returns DATASET_KEYS as float32 arrays (a visual env's observations as uint8 frames), rewards and masks
    (tasks, transitions): row i is OGBench's own
    single-task relabelling by `task_envs[i]` (single-task envs of `name`'s domain, which it resets), its
    rewards through `sparse_rewards` when `sparse` (masks are unchanged).
    """
    ob_dtype = observation_dtype(
        task_envs[0].observation_space.dtype
    )  # uint8 frames stay uint8, as OGBench's
    dataset = ogbench.utils.load_dataset(str(path), ob_dtype, compact_dataset=False, add_info=True)
    rewards, masks = [], []
    for env in task_envs:
        ogbench.relabel_utils.relabel_dataset(env_id_of(name), env, dataset)
        rewards.append(sparse_rewards(dataset["rewards"]) if sparse else dataset["rewards"])
        masks.append(dataset["masks"])
    dataset.update(rewards=np.stack(rewards), masks=np.stack(masks))
    return {
        key: observation_array(dataset[key])
        if "observations" in key
        else np.asarray(dataset[key], np.float32)
        for key in DATASET_KEYS
    }


def load_tasks(env_cfgs: Sequence, seed: int) -> dict:
    """The train dataset that `env_cfgs` (tasks of one domain, read from one file) share, loaded and checked
    once, its rewards and masks (tasks, transitions): row i is OGBench's relabelling for `env_cfgs[i]`. The
    envs that check and relabel it render nothing (`make_offline_env`): this runs in the trainer."""
    first = env_cfgs[0]
    cfg = EnvConfig.from_cfg(first)
    task_envs = [make_offline_env(env_cfg) for env_cfg in env_cfgs]
    path = locate_dataset(first, seed).path
    validate_dataset(path, task_envs[0], cfg.name)
    train = load_relabelled(path, cfg.name, task_envs, cfg.sparse)
    for env in task_envs:
        env.close()
    return train


def make_env_and_datasets(env_cfg, seed: int) -> tuple[gymnasium.Env, gymnasium.Env, dict, dict | None]:
    """The training env, the evaluation env, and the train and validation datasets of `env_cfg`.

    The datasets map DATASET_KEYS to float32 arrays (transitions, ...) loaded and relabelled by OGBench; with
    `env_cfg.sparse` the rewards go through `sparse_rewards` (masks are unchanged). They are relabelled with
    the env made for `env_cfg.success_timing`, as `ogbench.make_env_and_datasets(..., success_timing=...)`
    does; OGBench's relabelling judges each transition on its first state whatever the timing (1.1.2's did
    too), so only the envs' rewards and successes move with it.
    """
    cfg = EnvConfig.from_cfg(env_cfg)
    env, eval_env = make_env(env_cfg), make_env(env_cfg)
    path = locate_dataset(env_cfg, seed).path
    counts = validate_dataset(path, env, cfg.name)
    train, val = (load_relabelled(file, cfg.name, [env], cfg.sparse) for file in (path, val_path_of(path)))
    for dataset in (train, val):  # one task: rewards and masks (transitions,)
        dataset["rewards"], dataset["masks"] = dataset["rewards"][0], dataset["masks"][0]
    logger.info(
        "dataset: %d train transitions (%d episodes), %d validation transitions (%d episodes)",
        len(train["rewards"]),
        counts["train_episodes"],
        len(val["rewards"]),
        counts["val_episodes"],
    )
    return env, eval_env, train, val
