"""Session fixtures: tiny OGBench datasets generated once with the repo's own oracle generator."""

import ctypes.util
import os
import tempfile
from pathlib import Path

import jax
import pytest
from omegaconf import OmegaConf

from envs import generate_dataset, make_env, provenance
from envs.shards import ShardLoader, generate_shards, locate_shards
from tests.helpers import env_cfg

# Many tests compile the same update; JAX's persistent cache turns every compile after the first into a load,
# across the xdist workers and the subprocess runs (they inherit the environment variable). An entry read
# while another process still writes it is incomplete: JAX warns and compiles it.
JAX_CACHE = Path(tempfile.gettempdir()) / "chunkrl-test-jax-cache"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(JAX_CACHE))
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def memory_mappings() -> tuple[int, int]:
    """This process's memory mappings and the kernel's limit on them (0, 0 where /proc has neither)."""
    try:
        limit = int(Path("/proc/sys/vm/max_map_count").read_text())
        return sum(1 for _ in open("/proc/self/maps")), limit
    except OSError:
        return 0, 0


@pytest.fixture(autouse=True, scope="module")
def release_compiled_programs():
    """Every program XLA compiles for the CPU maps its own code pages (about 3 memory mappings each, kept
    while JAX caches it). A test worker compiling for hundreds of tests passed Linux's vm.max_map_count
    (65530) and XLA then segfaulted inside its compiler, in whichever test came next. After a module that
    leaves a quarter of the limit in use, JAX's in-memory caches are dropped, which unmaps them."""
    yield
    used, limit = memory_mappings()
    if used > limit // 4:
        jax.clear_caches()


def pytest_runtest_setup(item):
    """A `render` test needs an OpenGL library for MuJoCo (OSMesa on a CPU, EGL on a GPU): without one it
    skips saying what to install, except in CI, where .ci/run installs libosmesa6 and it must run."""
    if item.get_closest_marker("render") is None:
        return
    if not (ctypes.util.find_library("OSMesa") or ctypes.util.find_library("EGL")):
        reason = "no OpenGL library for MuJoCo: apt-get install libosmesa6 (MUJOCO_GL=osmesa renders on CPUs)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"the render tests must run in CI: {reason}")
        pytest.skip(reason)


# Written under OGBench's official file names, so `env.dataset_dir=<dir> env.download=false` finds them; their
# provenance records (envs/provenance.py) still tell that they were generated.
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
        if not path.exists() or provenance.generation(path) is None:  # a cache from before the records
            generate_dataset(name, path, **params)
    return directory


@pytest.fixture(scope="module")
def cube_env():
    return make_env(env_cfg("cube"))


# A sharded set in the published layout: 4 shards of cube-quadruple, 2 episodes x 51 steps (100 transitions).
TINY_SHARDS = dict(num_shards=4, num_episodes=2, max_episode_steps=51, workers=1)


@pytest.fixture(scope="session")
def tiny_shards_cfg(tmp_path_factory):
    """configs/env/cube_quadruple_100m.yaml pointing at TINY_SHARDS, generated once by `generate_shards` (kept
    in $CHUNKRL_TEST_DATA when that is set)."""
    cache = os.environ.get("CHUNKRL_TEST_DATA")
    directory = Path(cache) if cache else tmp_path_factory.mktemp("ogbench-data")
    root = OmegaConf.create(
        {"env": OmegaConf.load(Path(__file__).parents[1] / "configs/env/cube_quadruple_100m.yaml")}
    )
    OmegaConf.update(root, "env.dataset_dir", str(directory))
    for key in TINY_SHARDS:
        OmegaConf.update(root, f"env.generate.{key}", TINY_SHARDS[key])
    generate_shards(root.env, seed=0)
    return root.env


@pytest.fixture(scope="module")
def shard_paths(tiny_shards_cfg):
    """The shards of `tiny_shards_cfg`, in index order."""
    return locate_shards(tiny_shards_cfg, seed=0)


@pytest.fixture(scope="module")
def loader():
    """A ShardLoader of the tiny shards for cube-quadruple's task 2."""
    return ShardLoader(["cube-quadruple-play-singletask-task2-v0"], sparse=False)
