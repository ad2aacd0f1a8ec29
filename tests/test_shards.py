"""envs/shards.py: sharded datasets' layout, checks, loading and generation."""

import os
import shutil
from pathlib import Path

import numpy as np
import ogbench
import pytest
from omegaconf import OmegaConf

from buffers.stream import ShardStream
from envs import DatasetError
from envs import shards as shards_module
from envs.config import EnvConfig
from envs.generate import generate_dataset
from envs.robomimic import is_robomimic
from envs.shards import (
    ShardLoader,
    check_equal_shards,
    find_shards,
    generate_shards,
    locate_shards,
    shard_seed,
    sharded_dir,
)
from launch.engine import settings
from tests.helpers import compose_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DATASET = "cube-quadruple-play-v0"
TASK2 = "cube-quadruple-play-singletask-task2-v0"
TRANSITIONS = 100  # per tiny shard: 2 episodes of 51 steps (tests/conftest.py TINY_SHARDS)


def touch(directory: Path, *names: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(b"")
    return directory


# --- layout ------------------------------------------------------------------------------------------------


def test_shards_are_ordered_by_integer_index_whatever_the_padding(tmp_path):
    names = [f"{DATASET}-{index}.npz" for index in (0, 2, 10)] + [
        f"{DATASET}-{index:03d}.npz" for index in (1, 3)
    ]
    names += [f"{DATASET}-{index:02d}.npz" for index in range(4, 10)]
    ignored = [
        f"{DATASET}-val.npz",
        f"{DATASET}-003-val.npz",
        "cube-triple-play-v0-011.npz",
        f"{DATASET}.npz",
    ]
    directory = touch(tmp_path / "set", *names, *ignored)
    found = find_shards(directory, DATASET)
    assert [int(path.stem.rsplit("-", 1)[1]) for path in found] == list(range(11))


@pytest.mark.parametrize(
    "indices, message",
    [
        (("0", "1", "001", "2"), "shard index 1 appears twice"),
        (("0", "1", "3", "5"), r"expected shards 0 \.\. 5 with no gap, found 4; missing indices 2, 4"),
        ((), rf"expected shards '{DATASET}-<i>\.npz' \(i = 0, 1, \.\.\.\), found none"),
    ],
)
def test_duplicate_missing_or_no_shards_name_the_directory(tmp_path, indices, message):
    directory = touch(
        tmp_path / "set", *(f"{DATASET}-{index}.npz" for index in indices), f"{DATASET}-val.npz"
    )
    with pytest.raises(DatasetError, match=message) as error:
        find_shards(directory, DATASET)
    assert str(error.value).startswith(str(directory))


def test_no_shard_says_how_to_generate_or_download(tmp_path):
    cfg = OmegaConf.create({"env": OmegaConf.load(CONFIGS / "env/cube_quadruple_100m.yaml")})
    OmegaConf.update(cfg, "env.dataset_dir", str(tmp_path))
    directory = tmp_path / "cube-quadruple-play-100m-v0"
    with pytest.raises(DatasetError, match="found none") as error:
        locate_shards(cfg.env, seed=0)
    message = str(error.value)
    assert message.startswith(str(directory))
    assert f"python launch/make_dataset.py env.name={TASK2} env.dataset_size=100m" in message
    assert f"ogbench/{directory.name}/" in message  # the published set can be downloaded, a tiny one cannot
    tiny = OmegaConf.create({"env": OmegaConf.to_container(cfg.env)})
    OmegaConf.update(tiny, "env.generate.num_episodes", 2)
    with pytest.raises(DatasetError, match="found none") as error:
        locate_shards(tiny.env, seed=3)
    assert "env.generate.num_episodes=2 seed=3 env.generate.num_shards=N" in str(error.value)
    assert "ogbench/" not in str(error.value)


def test_sized_sets_get_their_own_directory(tiny_shards_cfg, tmp_path):
    assert sharded_dir(tiny_shards_cfg, 0).name == "cube-quadruple-play-100m-v0-ep2-len51-s0"
    cfg = OmegaConf.create({"env": OmegaConf.load(CONFIGS / "env/cube_quadruple_100m.yaml")})
    OmegaConf.update(cfg, "env.dataset_dir", str(tmp_path))
    OmegaConf.update(cfg, "env.dataset_size", "1b")
    assert sharded_dir(cfg.env, 0) == tmp_path / "cube-quadruple-play-1b-v0"


def test_unreadable_or_odd_shard_is_named(shard_paths, tmp_path, loader):
    directory = tmp_path / "set"
    directory.mkdir()
    for path in shard_paths:
        shutil.copy(path, directory / path.name)
    copies = find_shards(directory, DATASET)

    with np.load(shard_paths[2]) as file:
        one_episode = {key: file[key][:51] for key in file.files}
    np.savez_compressed(copies[2], **one_episode)
    with pytest.raises(DatasetError, match=f"{copies[2]}: 51 steps in 1 episodes, but .*-000.npz has 102"):
        check_equal_shards(copies)
    # a set that skipped the up-front check still fails, naming the shard that differs from the first
    stream = ShardStream([copies[0], copies[2]], loader, seed=0, shards_in_memory=1)
    store = stream.initial_store()
    with pytest.raises(DatasetError, match=f"{stream.path_of(1)}: .* state rows, but the other shards"):
        stream.swap(store)
    stream.close()

    copies[1].write_bytes(copies[1].read_bytes()[:300])
    with pytest.raises(DatasetError, match=f"{copies[1]} cannot be read as a shard .* delete it and regen"):
        check_equal_shards(copies, "regenerate it")
    with pytest.raises(DatasetError, match=f"{copies[1]} cannot be read .* corrupt: delete it and regen"):
        ShardLoader([TASK2], sparse=False, how_to_fix="regenerate it")(copies[1])


# --- loading -----------------------------------------------------------------------------------------------


def test_a_shard_loads_as_ogbench_loads_and_relabels_it(shard_paths):
    tasks = [f"cube-quadruple-play-singletask-task{task}-v0" for task in (2, 4)]
    dataset = ShardLoader(tasks, sparse=False)(shard_paths[1])
    assert dataset["rewards"].shape == dataset["masks"].shape == (2, TRANSITIONS)
    for row, name in enumerate(tasks):
        _, expected, _ = ogbench.make_env_and_datasets(name, dataset_path=str(shard_paths[1]))
        for key in ("observations", "actions", "terminals", "next_observations"):
            np.testing.assert_array_equal(dataset[key], expected[key], err_msg=key)
        np.testing.assert_array_equal(dataset["rewards"][row], expected["rewards"])
        np.testing.assert_array_equal(dataset["masks"][row], expected["masks"])
    sparse = ShardLoader(tasks[:1], sparse=True)(shard_paths[1])
    np.testing.assert_array_equal(sparse["rewards"][0], np.where(dataset["rewards"][0] != 0, -1.0, 0.0))
    assert dataset["terminals"][-1] == 1  # each shard ends a trajectory: segments never run into each other


def test_loading_moves_no_global_random_generator(shard_paths, loader):
    state = np.random.get_state()
    loader(shard_paths[0])
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]


def test_shard_tasks_must_share_one_dataset():
    with pytest.raises(ValueError, match="single-task names of one dataset"):
        ShardLoader([TASK2, "cube-triple-play-singletask-task2-v0"], sparse=False)


# --- generation and config ---------------------------------------------------------------------------------


def test_generation_names_seeds_and_resumes(tiny_shards_cfg, shard_paths, tmp_path, monkeypatch):
    assert [path.name for path in shard_paths] == [f"{DATASET}-{index:03d}.npz" for index in range(4)]
    with np.load(shard_paths[0]) as first, np.load(shard_paths[1]) as second:
        assert not np.array_equal(first["observations"], second["observations"])

    cfg = OmegaConf.create({"env": OmegaConf.to_container(tiny_shards_cfg)})
    OmegaConf.update(cfg, "env.dataset_dir", str(tmp_path))
    directory = sharded_dir(cfg.env, 0)
    directory.mkdir(parents=True)
    for path in shard_paths:
        if path.name != f"{DATASET}-002.npz":  # an interrupted generation: shard 2 never written
            shutil.copy(path, directory / path.name)
    seeds = []

    def recording_generate(*args, seed, **kwargs):
        seeds.append(seed)
        return generate_dataset(*args, seed=seed, **kwargs)

    monkeypatch.setattr(shards_module, "generate_dataset", recording_generate)
    result = generate_shards(cfg.env, seed=0)
    assert seeds == [shard_seed(0, 2)] and len(result["kept"]) == 3 and result["shards"] == 4
    assert result["steps_per_shard"] == 102 and result["episodes_per_shard"] == 2
    with np.load(directory / f"{DATASET}-002.npz") as regenerated, np.load(shard_paths[2]) as original:
        for key in original.files:
            np.testing.assert_array_equal(regenerated[key], original[key], err_msg=key)


def test_every_env_config_has_the_shard_keys_and_core_count_workers():
    for path in sorted((CONFIGS / "env").glob("*.yaml")):
        root = OmegaConf.create({"env": OmegaConf.load(path)})
        if is_robomimic(root.env.name):  # robomimic's files are read as they are: no shards, no generation
            continue
        cfg = EnvConfig.from_cfg(root.env)
        sharded = path.stem.endswith("_100m")  # cube-quadruple's (the paper's) and puzzle-4x4's (QAM's)
        assert cfg.dataset_size == ("100m" if sharded else None), path.name
        assert (cfg.shards_in_memory, cfg.shard_interval, cfg.num_shards) == (1, 1000, None), path.name
        assert cfg.workers == len(os.sched_getaffinity(0)), path.name
    root = OmegaConf.create({"env": OmegaConf.load(CONFIGS / "env/cube.yaml")})
    OmegaConf.update(root, "env.dataset_size", "10m")
    with pytest.raises(
        ValueError, match=r"env.dataset_size: expected null .*\['100m', '1b'\] \(a sharded set\), found '10m'"
    ):
        EnvConfig.from_cfg(root.env)


def test_cube_quadruple_100m_is_the_papers_setting():
    cfg = compose_config("env=cube_quadruple_100m", "agent=qc_fql")
    assert cfg.env.name == TASK2 and not cfg.env.sparse
    assert settings.agent_settings(cfg, "cube-quadruple")["alpha"] == 100
