"""envs/generate.py: local generation of OGBench datasets with the scripted oracles, on tiny data."""

import numpy as np
import ogbench
import pytest

from envs import DatasetError, generate_dataset, make_env, validate_dataset
from envs import generate as generate_module
from envs.file_format import FILE_DTYPES
from tests.helpers import CUBE, MAZE, STEPS, env_cfg, load_pair, write_pair


@pytest.mark.parametrize("name, obs_dim, qpos_dim", [(CUBE, 37, 28), (MAZE, 2, 2)])
def test_generated_files_have_the_official_format(tiny_dataset_dir, name, obs_dim, qpos_dim):
    train, val = load_pair(tiny_dataset_dir / f"{name}.npz")
    for arrays, episodes in ((train, 4), (val, 1)):
        assert set(arrays) == {"observations", "actions", "terminals", "qpos", "qvel"}
        assert {key: arrays[key].dtype for key in arrays} == {key: FILE_DTYPES[key] for key in arrays}
        assert arrays["observations"].shape == (episodes * STEPS, obs_dim)
        assert arrays["qpos"].shape == (episodes * STEPS, qpos_dim)
        assert np.flatnonzero(arrays["terminals"]).tolist() == [STEPS * (i + 1) - 1 for i in range(episodes)]
        assert np.abs(arrays["actions"]).max() <= 1.0
    # qpos is the state the observation was taken in (info['prev_qpos']), not the next one.
    if name == MAZE:
        np.testing.assert_array_equal(train["observations"], train["qpos"])
    else:
        np.testing.assert_allclose(train["observations"][:, :6], train["qpos"][:, :6], atol=1e-6)


@pytest.mark.parametrize(
    "name, single_task",
    [(CUBE, "cube-double-play-singletask-task2-v0"), (MAZE, "pointmaze-medium-navigate-singletask-task1-v0")],
)
def test_generated_files_load_through_ogbench(tiny_dataset_dir, name, single_task):
    path = str(tiny_dataset_dir / f"{name}.npz")
    assert len(ogbench.load_dataset(path)["observations"]) == 4 * (STEPS - 1)
    _, train, val = ogbench.make_env_and_datasets(single_task, dataset_path=path)
    assert len(train["rewards"]) == 4 * (STEPS - 1) and len(val["masks"]) == STEPS - 1


def test_generation_is_deterministic_and_independent_of_workers(
    tiny_dataset_dir, tiny_dataset_params, tmp_path
):
    params = tiny_dataset_params[CUBE]
    assert params["workers"] == 2
    generate_dataset(CUBE, tmp_path / "cube.npz", **{**params, "workers": 1})
    for fixture, regenerated in zip(
        load_pair(tiny_dataset_dir / f"{CUBE}.npz"), load_pair(tmp_path / "cube.npz"), strict=True
    ):
        assert fixture.keys() == regenerated.keys()
        for key in fixture:
            np.testing.assert_array_equal(fixture[key], regenerated[key], err_msg=key)

    generate_dataset(MAZE, tmp_path / "maze.npz", **{**tiny_dataset_params[MAZE], "seed": 1})
    assert not np.array_equal(
        load_pair(tmp_path / "maze.npz")[0]["actions"],
        load_pair(tiny_dataset_dir / f"{MAZE}.npz")[0]["actions"],
    )


@pytest.mark.parametrize("name, group", [("scene-noisy-v0", "scene"), ("puzzle-3x3-play-v0", "puzzle_3x3")])
def test_generated_button_domains_carry_button_states(tmp_path, name, group):
    path = tmp_path / f"{name}.npz"
    stats = generate_dataset(name, path, num_episodes=1, max_episode_steps=30, workers=1, seed=0)
    assert stats["steps"] == 2 * 30 and stats["steps_per_second"] > 0
    train, val = load_pair(path)
    assert train["button_states"].dtype == np.int64 and len(train["button_states"]) == 30
    env = make_env(env_cfg(group))
    assert validate_dataset(path, env, env_cfg(group).name)["train_episodes"] == 1
    del train["button_states"]
    write_pair(path, train, val)
    with pytest.raises(DatasetError, match=r"missing keys \['button_states'\]"):
        validate_dataset(path, env, env_cfg(group).name)


def test_interrupted_generation_leaves_no_file_under_the_final_names(tmp_path, monkeypatch):
    written = []

    def write_then_fail(file, arrays):
        written.append(file.name)
        file.write(b"partial")
        if len(written) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(generate_module, "_write_npz", write_then_fail)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(
            MAZE, tmp_path / f"{MAZE}.npz", num_episodes=2, max_episode_steps=10, workers=1, seed=0
        )
    assert len(written) == 2
    assert list(tmp_path.iterdir()) == []


def test_generation_rejects_unsupported_datasets_and_unknown_sizes(tmp_path):
    with pytest.raises(DatasetError, match="cannot generate 'antmaze-large-navigate-v0' locally"):
        generate_dataset(
            "antmaze-large-navigate-v0",
            tmp_path / "a.npz",
            num_episodes=1,
            max_episode_steps=5,
            workers=1,
            seed=0,
        )
    with pytest.raises(DatasetError, match="no published size is known for 'puzzle-4x4-play-v0'"):
        generate_dataset(
            "puzzle-4x4-play-v0",
            tmp_path / "p.npz",
            num_episodes=None,
            max_episode_steps=5,
            workers=1,
            seed=0,
        )
