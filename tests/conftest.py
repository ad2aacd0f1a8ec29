"""Session fixtures: tiny OGBench datasets generated once with the repo's own oracle generator."""

import os
import tempfile
from pathlib import Path

import jax
import pytest

from envs import generate_dataset

# Many tests compile the same update; JAX's persistent cache turns every compile after the first into a load.
# Subprocess tests inherit it through the environment variable.
JAX_CACHE = Path(tempfile.gettempdir()) / "chunkrl-test-jax-cache"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(JAX_CACHE))
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

# Written under OGBench's official file names, so `env.dataset_dir=<dir> env.download=false` finds them.
# Each has 4 train episodes and 1 validation episode of 201 steps (200 transitions each).
TINY_DATASETS = {
    "cube-double-play-v0": dict(num_episodes=4, max_episode_steps=201, workers=2, seed=0),
    "pointmaze-medium-navigate-v0": dict(num_episodes=4, max_episode_steps=201, workers=1, seed=0),
}


@pytest.fixture(scope="session")
def tiny_dataset_params() -> dict:
    """How each file in `tiny_dataset_dir` was generated (arguments of `generate_dataset`)."""
    return TINY_DATASETS


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory) -> Path:
    """A directory holding the TINY_DATASETS; kept across sessions in $CHUNKRL_TEST_DATA when that is set."""
    cache = os.environ.get("CHUNKRL_TEST_DATA")
    directory = Path(cache) if cache else tmp_path_factory.mktemp("ogbench-data")
    for name, params in TINY_DATASETS.items():
        path = directory / f"{name}.npz"
        if not path.exists():
            generate_dataset(name, path, **params)
    return directory
