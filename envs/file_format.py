"""OGBench's dataset file format, shared by the generator that writes it and the validator that checks it.

A dataset is a pair of `np.savez_compressed` files, `<name>.npz` and `<name>-val.npz`, with one row per
environment step (the last step of each episode included) holding these arrays.
"""

from pathlib import Path

import numpy as np

from envs.errors import DatasetError

FILE_DTYPES = {
    "observations": np.dtype(np.float32),
    "actions": np.dtype(np.float32),
    "terminals": np.dtype(bool),
    "qpos": np.dtype(np.float32),
    "qvel": np.dtype(np.float32),
    "button_states": np.dtype(np.int64),  # only for environments with buttons (scene, puzzle)
}


def file_dtype(key: str, observation_dtype) -> np.dtype:
    """The dtype of `key` in a file of an env whose observations have `observation_dtype`: a visual env's
    frames are stored as uint8, as OGBench's visual files are."""
    if key == "observations" and np.dtype(observation_dtype) == np.uint8:
        return np.dtype(np.uint8)
    return FILE_DTYPES[key]


def val_path_of(path: Path) -> Path:
    """The validation file beside a train file, derived exactly as OGBench's loader derives it."""
    return Path(str(path).replace(".npz", "-val.npz"))


def check_npz_path(path: Path) -> None:
    """Rejects a path from which OGBench would derive the wrong validation file."""
    if path.suffix != ".npz" or str(path).count(".npz") != 1:
        raise DatasetError(
            f"{path}: expected a path ending in '.npz' with no other '.npz' in it (OGBench finds the "
            "validation file by replacing '.npz' with '-val.npz')"
        )
