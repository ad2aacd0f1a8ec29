"""envs/datasets.py: dataset resolution, validation and loading of single-task OGBench envs, on tiny data."""

import logging
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import ogbench
import pytest

from envs import DatasetError, locate_dataset, make_env, make_env_and_datasets, validate_dataset
from envs import generate as generate_module
from envs.oracles import OFFICIAL_EPISODES
from envs.suite import SparseReward
from tests.helpers import CUBE, MAZE, STEPS, env_cfg, load_pair, write_pair


@pytest.fixture
def no_download(monkeypatch):
    def download(*args, **kwargs):
        raise AssertionError("the download must not be attempted here")

    monkeypatch.setattr(ogbench, "download_datasets", download)


# --- relabelling -------------------------------------------------------------------------------------------


def test_dataset_relabelling_under_each_timing_is_ogbench_own(tiny_dataset_dir, tmp_path):
    train, val = load_pair(tiny_dataset_dir / f"{MAZE}.npz")
    name = "pointmaze-medium-navigate-singletask-task1-v0"
    goal = np.array(make_env(env_cfg("pointmaze")).unwrapped.task_infos[0]["goal_xy"])
    train["qpos"][10:15, :2] = goal  # a few states at the goal, so that some rewards are 0
    path = str(write_pair(tmp_path / "maze.npz", train, val))
    relabelled = {}
    for timing in (None, "post"):
        cfg = env_cfg("pointmaze", dataset_path=path, success_timing=timing)
        _, _, ours, _ = make_env_and_datasets(cfg, seed=0)
        kwargs = {} if timing is None else {"success_timing": timing}
        _, theirs, _ = ogbench.make_env_and_datasets(name, dataset_path=path, **kwargs)
        for key in ("rewards", "masks"):
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"{key}, timing {timing}")
        relabelled[timing] = ours
    assert sorted(set(relabelled[None]["rewards"].tolist())) == [-1.0, 0.0]
    # OGBench judges a dataset transition on its first state under either timing.
    np.testing.assert_array_equal(relabelled["post"]["rewards"], relabelled[None]["rewards"])


# --- resolution --------------------------------------------------------------------------------------------


def test_explicit_path_wins(tiny_dataset_dir, tmp_path, no_download, caplog):
    path = tiny_dataset_dir / f"{MAZE}.npz"
    cfg = env_cfg("pointmaze", dataset_path=str(path), dataset_dir=str(tmp_path), generate__num_episodes=2)
    with caplog.at_level(logging.INFO, logger="envs.datasets"):
        resolved = locate_dataset(cfg, seed=0)
    assert (resolved.path, resolved.source) == (path, "explicit")
    assert "explicit env.dataset_path" in caplog.text
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DatasetError, match=f"env.dataset_path {tmp_path / 'nope.npz'}: .* found no file"):
        locate_dataset(env_cfg("pointmaze", dataset_path=str(tmp_path / "nope.npz")), seed=0)


def test_existing_official_file_is_used_as_is(tiny_dataset_dir, no_download, caplog):
    with caplog.at_level(logging.INFO, logger="envs.datasets"):
        resolved = locate_dataset(env_cfg("cube", dataset_dir=str(tiny_dataset_dir)), seed=5)
    assert (resolved.path, resolved.source) == (tiny_dataset_dir / f"{CUBE}.npz", "existing")
    assert f"existing file, used as is -> {resolved.path}" in caplog.text


def test_sized_request_generates_its_own_file_without_downloading(
    tiny_dataset_dir, tmp_path, no_download, caplog
):
    for suffix in (".npz", "-val.npz"):
        shutil.copy(tiny_dataset_dir / f"{MAZE}{suffix}", tmp_path / f"{MAZE}{suffix}")
    official = (tmp_path / f"{MAZE}.npz").read_bytes()
    cfg = env_cfg(
        "pointmaze", dataset_dir=str(tmp_path), generate__num_episodes=2, generate__max_episode_steps=20
    )
    with caplog.at_level(logging.INFO, logger="envs.datasets"):
        resolved = locate_dataset(cfg, seed=3)
    assert resolved.path == tmp_path / "pointmaze-medium-navigate-v0-ep2-len20-s3.npz"
    assert resolved.source == "generated" and resolved.generation["steps"] == 3 * 20
    assert (
        "generated locally with OGBench's scripted oracles (2 + 1 validation episodes of 20 steps"
        in caplog.text
    )
    assert (tmp_path / f"{MAZE}.npz").read_bytes() == official
    assert len(load_pair(resolved.path)[0]["terminals"]) == 2 * 20
    assert locate_dataset(cfg, seed=3).source == "existing"
    assert locate_dataset(cfg, seed=4).path.name == "pointmaze-medium-navigate-v0-ep2-len20-s4.npz"


def test_failed_download_removes_partial_files_and_generates(tmp_path, monkeypatch, caplog):
    def broken_download(names, dataset_dir):
        (Path(dataset_dir) / f"{names[0]}.npz").write_bytes(b"complete train file")
        (Path(dataset_dir) / f"{names[0]}-val.npz.tmp").write_bytes(b"half a val file")
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(ogbench, "download_datasets", broken_download)
    monkeypatch.setitem(OFFICIAL_EPISODES, MAZE, 2)
    monkeypatch.setattr(generate_module, "OFFICIAL_EPISODE_STEPS", 30)
    with caplog.at_level(logging.INFO, logger="envs.datasets"):
        resolved = locate_dataset(env_cfg("pointmaze", dataset_dir=str(tmp_path)), seed=0)
    generated = f"{MAZE}-generated-s0"  # never the published name, which a download may take later
    assert (resolved.path, resolved.source) == (tmp_path / f"{generated}.npz", "generated")
    assert "downloading pointmaze-medium-navigate-v0 failed (<urlopen error no network>)" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".{generated}.npz.lock",
        f"{generated}-val.npz",
        f"{generated}.npz",
        f"{generated}.npz.provenance.json",
    ]
    train, val = load_pair(resolved.path)
    assert len(train["terminals"]) == 2 * 30 and len(val["terminals"]) == 30


def test_successful_download_is_used(tiny_dataset_dir, tmp_path, monkeypatch):
    def download(names, dataset_dir):
        for suffix in (".npz", "-val.npz"):
            shutil.copy(tiny_dataset_dir / f"{names[0]}{suffix}", Path(dataset_dir) / f"{names[0]}{suffix}")

    monkeypatch.setattr(ogbench, "download_datasets", download)
    resolved = locate_dataset(env_cfg("pointmaze", dataset_dir=str(tmp_path)), seed=0)
    assert (resolved.path, resolved.source) == (tmp_path / f"{MAZE}.npz", "downloaded")


# --- validation --------------------------------------------------------------------------------------------


def _drop_qvel(train):
    del train["qvel"]


BAD_DATA = {
    "missing key": (_drop_qvel, r"missing keys \['qvel'\]"),
    "terminals dtype": (
        lambda t: t.update(terminals=t["terminals"].astype(np.float32)),
        "'terminals' has dtype float32, expected bool",
    ),
    "observations dtype": (
        lambda t: t.update(observations=t["observations"].astype(np.float64)),
        "'observations' has dtype float64, expected float32",
    ),
    "qpos shape": (
        lambda t: t.update(qpos=t["qpos"][:, 0]),
        r"'qpos' has shape \(804,\), expected 2 dimensions",
    ),
    "lengths": (lambda t: t.update(actions=t["actions"][:-1]), r"inconsistent lengths .*'actions': 803"),
    "observation size": (
        lambda t: t.update(observations=t["observations"][:, :-1]),
        r"'observations' have shape \(36,\) per step, expected \(37,\)",
    ),
    "action size": (
        lambda t: t.update(actions=t["actions"][:, :4]),
        r"'actions' have shape \(4,\) per step, expected \(5,\)",
    ),
    "unterminated": (
        lambda t: t["terminals"].__setitem__(-1, False),
        "expected 'terminals' to end an episode on the last step",
    ),
    "NaN observation": (
        lambda t: t["observations"].__setitem__((7, 3), np.nan),
        r"'observations' holds a non-finite value \(NaN or inf\) first at row 7 ",
    ),
    "inf qvel": (
        lambda t: t["qvel"].__setitem__((np.s_[12:15], 0), -np.inf),
        r"'qvel' holds a non-finite value \(NaN or inf\) first at row 12 ",
    ),
}


@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_data_raises_one_error_naming_file_and_problem(tiny_dataset_dir, tmp_path, cube_env, case):
    corrupt, message = BAD_DATA[case]
    train, val = load_pair(tiny_dataset_dir / f"{CUBE}.npz")
    corrupt(train)
    path = write_pair(tmp_path / "bad.npz", train, val)
    with pytest.raises(DatasetError, match=message) as error:
        validate_dataset(path, cube_env, "cube-double-play-singletask-task2-v0")
    assert str(error.value).startswith(str(path))


def test_bad_data_is_caught_before_ogbench_loads_it(tiny_dataset_dir, tmp_path):
    train, val = load_pair(tiny_dataset_dir / f"{MAZE}.npz")
    path = write_pair(tmp_path / "bad.npz", {**train, "actions": train["actions"][:, :1]}, val)
    with pytest.raises(DatasetError, match=f"{path}: 'actions' have shape"):
        make_env_and_datasets(env_cfg("pointmaze", dataset_path=str(path)), seed=0)


def test_non_finite_data_stops_the_run_before_training(tiny_dataset_dir, tmp_path):
    train, val = load_pair(tiny_dataset_dir / f"{MAZE}.npz")
    train["actions"][30, 1] = np.nan
    path = write_pair(tmp_path / "bad.npz", train, val)
    with pytest.raises(
        DatasetError, match=rf"{path}: 'actions' holds a non-finite value .* first at row 30 "
    ):
        make_env_and_datasets(env_cfg("pointmaze", dataset_path=str(path)), seed=0)


def test_missing_validation_file_is_named(tiny_dataset_dir, tmp_path, cube_env):
    path = tmp_path / f"{CUBE}.npz"
    shutil.copy(tiny_dataset_dir / f"{CUBE}.npz", path)
    with pytest.raises(DatasetError, match=f"{tmp_path / CUBE}-val.npz: expected a dataset file, found none"):
        validate_dataset(path, cube_env, "cube-double-play-singletask-task2-v0")


@pytest.mark.parametrize("damage", ["truncate", "flip bytes"])
def test_unreadable_file_says_how_to_regenerate(tiny_dataset_dir, tmp_path, cube_env, damage):
    data = bytearray((tiny_dataset_dir / f"{CUBE}.npz").read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        middle = len(data) // 3
        data[middle : middle + 64] = bytes(64)
    path = tmp_path / f"{CUBE}.npz"
    path.write_bytes(bytes(data))
    shutil.copy(tiny_dataset_dir / f"{CUBE}-val.npz", tmp_path / f"{CUBE}-val.npz")
    with pytest.raises(DatasetError, match="probably truncated or corrupt") as error:
        validate_dataset(path, cube_env, "cube-double-play-singletask-task2-v0")
    message = str(error.value)
    assert message.startswith(f"{path} cannot be read")
    assert f"rm -f {path} {tmp_path / CUBE}-val.npz && python launch/make_dataset.py env.name=" in message


# --- loading -----------------------------------------------------------------------------------------------


def test_datasets_are_ogbench_loaded_transitions(tiny_dataset_dir):
    cfg = env_cfg("pointmaze", dataset_dir=str(tiny_dataset_dir), download=False)
    env, eval_env, train, val = make_env_and_datasets(cfg, seed=0)
    assert env is not eval_env
    assert (
        set(train)
        == set(val)
        == {"observations", "actions", "rewards", "masks", "terminals", "next_observations"}
    )
    assert all(array.dtype == np.float32 for array in (*train.values(), *val.values()))
    assert len(train["rewards"]) == 4 * (STEPS - 1) and len(val["rewards"]) == STEPS - 1
    assert np.flatnonzero(train["terminals"]).tolist() == [199, 399, 599, 799]
    within = train["terminals"][:-1] == 0
    np.testing.assert_array_equal(train["next_observations"][:-1][within], train["observations"][1:][within])
    _, ogbench_train, _ = ogbench.make_env_and_datasets(
        cfg.name, dataset_path=str(tiny_dataset_dir / f"{MAZE}.npz")
    )
    for key in train:
        np.testing.assert_array_equal(train[key], ogbench_train[key], err_msg=key)


def reference_cube_rewards(qpos: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """OGBench's single-task cube reward written out: minus the number of cubes over 4 cm from their goal."""
    rewards = []
    for row in qpos:
        placed = sum(
            np.linalg.norm(row[14 + 7 * i : 17 + 7 * i] - goal) <= 0.04 for i, goal in enumerate(goals)
        )
        rewards.append(placed - len(goals))
    return np.array(rewards, np.float32)


def test_cube_rewards_by_hand_and_sparse_relabelling(tiny_dataset_dir, tmp_path, cube_env):
    train, val = load_pair(tiny_dataset_dir / f"{CUBE}.npz")
    goals = cube_env.unwrapped.task_infos[1]["goal_xyzs"]  # task 2
    train["qpos"][10:20, 14:17] = goals[0]  # cube 0 on its goal for 10 steps,
    train["qpos"][15:20, 21:24] = goals[1]  # and both cubes for the last 5 of them
    path = write_pair(tmp_path / "cube.npz", train, val)
    # Reward r_t is read from the state s_t the action was taken in, like the single-task env's reward.
    expected = reference_cube_rewards(train["qpos"][~train["terminals"]], goals)
    assert sorted(set(expected[10:20].tolist())) == [-1.0, 0.0]

    dense, _ = ogbench.make_env_and_datasets(
        "cube-double-play-singletask-task2-v0", dataset_path=str(path), dataset_only=True, cur_env=cube_env
    )
    np.testing.assert_array_equal(dense["rewards"], expected)
    np.testing.assert_array_equal(dense["masks"], (expected != 0).astype(np.float32))

    env, eval_env, sparse, _ = make_env_and_datasets(
        env_cfg("cube", dataset_path=str(path), sparse=True), seed=0
    )
    assert isinstance(env, SparseReward) and isinstance(eval_env, SparseReward)
    np.testing.assert_array_equal(sparse["rewards"], np.where(expected != 0, -1.0, 0.0))
    for key in sparse.keys() - {"rewards"}:
        np.testing.assert_array_equal(sparse[key], dense[key], err_msg=key)


@pytest.mark.parametrize("download", [True, False])
def test_locomotion_data_without_the_download_fails_naming_its_path(tmp_path, monkeypatch, download):
    monkeypatch.setattr("envs.datasets._download", lambda name, path: False)  # no network
    cfg = env_cfg("antmaze_giant", dataset_dir=str(tmp_path), download=download)
    with pytest.raises(DatasetError) as raised:
        locate_dataset(cfg, seed=0)
    message = str(raised.value)
    assert "\n" not in message and f"at {tmp_path / 'antmaze-giant-navigate-v0.npz'} " in message
    assert ("download failed" if download else "env.download is false") in message
    assert not list(tmp_path.glob("*.npz"))
