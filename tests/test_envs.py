"""envs/: names, env making, dataset resolution, validation, loading and oracle generation, on tiny data."""

import logging
import os
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import ogbench
import pytest
from omegaconf import OmegaConf

from envs import (
    DatasetError,
    dataset_file_name,
    domain_of,
    generate_dataset,
    locate_dataset,
    make_env,
    make_env_and_datasets,
    sparse_rewards,
    validate_dataset,
)
from envs import generate as generate_module
from envs.file_format import FILE_DTYPES
from envs.headless import headless_backend
from envs.oracles import OFFICIAL_EPISODES, make_collector
from envs.suite import SparseReward

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "env"
CUBE, MAZE = "cube-double-play-v0", "pointmaze-medium-navigate-v0"
STEPS = 201  # per episode in the tiny datasets (tests/conftest.py)


def env_cfg(group: str, **overrides):
    """configs/env/<group>.yaml as Hydra composes it, with dotted-key overrides (`generate__workers=2`)."""
    root = OmegaConf.create({"env": OmegaConf.load(CONFIGS / f"{group}.yaml")})
    for key, value in overrides.items():
        OmegaConf.update(root, "env." + key.replace("__", "."), value)
    return root.env


def load_pair(path: Path) -> tuple[dict, dict]:
    with np.load(path) as train, np.load(str(path).replace(".npz", "-val.npz")) as val:
        return dict(train), dict(val)


def write_pair(path: Path, train: dict, val: dict) -> Path:
    np.savez_compressed(path, **train)
    np.savez_compressed(str(path).replace(".npz", "-val.npz"), **val)
    return path


@pytest.fixture
def no_download(monkeypatch):
    def download(*args, **kwargs):
        raise AssertionError("the download must not be attempted here")

    monkeypatch.setattr(ogbench, "download_datasets", download)


@pytest.fixture(scope="module")
def cube_env():
    return make_env(env_cfg("cube"))


# --- names -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, domain, file_name",
    [
        ("cube-double-play-singletask-task2-v0", "cube-double", "cube-double-play-v0.npz"),
        ("cube-quadruple-play-singletask-v0", "cube-quadruple", "cube-quadruple-play-v0.npz"),
        ("scene-noisy-singletask-task5-v0", "scene", "scene-noisy-v0.npz"),
        ("puzzle-3x3-play-singletask-task4-v0", "puzzle-3x3", "puzzle-3x3-play-v0.npz"),
        (
            "pointmaze-medium-navigate-singletask-task1-v0",
            "pointmaze-medium",
            "pointmaze-medium-navigate-v0.npz",
        ),
        ("antsoccer-arena-stitch-singletask-task3-v0", "antsoccer-arena", "antsoccer-arena-stitch-v0.npz"),
    ],
)
def test_domain_and_dataset_file_of_single_task_names(name, domain, file_name):
    assert domain_of(name) == domain
    assert dataset_file_name(name) == file_name


def test_domain_of_other_names_and_bad_names():
    assert domain_of("cube-double-play-v0") == "cube-double"
    assert domain_of("puzzle-3x3-play-sparse-singletask-task1-v0") == "puzzle-3x3"
    with pytest.raises(ValueError, match="expected an OGBench name with a dataset type"):
        domain_of("cube-double-singletask-task2-v0")
    with pytest.raises(ValueError, match="unknown env 'cube-double-play-v0'"):
        dataset_file_name("cube-double-play-v0")


# --- environments ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cube-double-play-singletask-task9-v0", "cube-double-play-v0", "cube"])
def test_unknown_env_name_lists_the_valid_single_task_envs(name):
    with pytest.raises(ValueError, match=f"unknown env '{name}'") as error:
        make_env(env_cfg("cube", name=name))
    assert "cube-double-singletask-task2-v0" in str(error.value)
    assert "pointmaze-medium-singletask-task1-v0" in str(error.value)


def test_make_env_keeps_ogbench_time_limit_unless_configured(cube_env):
    assert cube_env.spec.max_episode_steps == 500
    assert cube_env.observation_space.shape == (37,) and cube_env.action_space.shape == (5,)
    short = make_env(env_cfg("pointmaze", max_episode_steps=3))
    short.reset(seed=0)
    ends = [any(short.step(np.zeros(2, np.float32))[2:4]) for _ in range(3)]
    assert ends == [False, False, True]


def test_sparse_reward_is_minus_one_unless_every_subgoal_holds(cube_env):
    np.testing.assert_array_equal(sparse_rewards([-3.0, -1.0, 0.0, -2.0, 0.0]), [-1.0, -1.0, 0.0, -1.0, 0.0])
    sparse_env = make_env(env_cfg("cube", sparse=True))
    assert isinstance(sparse_env, SparseReward) and not isinstance(cube_env, SparseReward)
    assert [sparse_env.reward(r) for r in (-2.0, -1.0, 0.0)] == [-1.0, -1.0, 0.0]
    cube_env.reset(seed=0)
    sparse_env.reset(seed=0)
    for action in np.random.default_rng(0).uniform(-1, 1, (5, 5)).astype(np.float32):
        dense = cube_env.step(action)[1]
        assert dense in (-2.0, -1.0, 0.0) and sparse_env.step(action)[1] == (-1.0 if dense else 0.0)
    assert env_cfg("scene").sparse and env_cfg("puzzle_3x3").sparse and not env_cfg("cube").sparse


def test_config_errors_name_the_key():
    cfg = env_cfg("cube")
    del cfg["download"]
    with pytest.raises(ValueError, match="expected a key 'download'"):
        make_env(cfg)
    with pytest.raises(ValueError, match=r"env.generate.workers: expected an integer >= 1, found 0"):
        make_env(env_cfg("cube", generate__workers=0))


def maze_steps_into_goal(success_timing: str | None) -> list[tuple[bool, bool, float, float, bool]]:
    """(goal reached before the step, after it, info success, reward, terminated) per step of a point that
    starts just outside the goal and moves straight into it."""
    env = make_env(env_cfg("pointmaze", success_timing=success_timing))
    maze = env.unwrapped
    env.reset(seed=0)
    goal, tolerance = np.array(maze.cur_goal_xy), maze._goal_tol
    maze.set_xy(goal + np.array([tolerance + 0.3, 0.0]))
    steps = []
    for _ in range(20):
        before = np.linalg.norm(maze.get_xy() - goal) <= tolerance
        _, reward, terminated, _, info = env.step(np.array([-1.0, 0.0], np.float32))
        after = np.linalg.norm(maze.get_xy() - goal) <= tolerance
        steps.append((bool(before), bool(after), info["success"], reward, terminated))
        if terminated:
            return steps
    raise AssertionError(f"the point never reached the goal: {steps}")


@pytest.mark.parametrize("success_timing, judged_on", [(None, 0), ("pre", 0), ("post", 1)])
def test_success_timing_judges_the_state_before_or_after_the_step(success_timing, judged_on):
    steps = maze_steps_into_goal(success_timing)
    assert any(before != after for before, after, *_ in steps)  # a step that tells the timings apart
    for step in steps:
        success = step[judged_on]
        assert step[2:] == (float(success), float(success) - 1.0, success)


def test_success_timing_must_be_one_of_ogbench_values():
    with pytest.raises(ValueError, match=r"env.success_timing: expected null or one of \['pre', 'post'\], "):
        make_env(env_cfg("cube", success_timing="after"))
    assert all(env_cfg(group).success_timing is None for group in ("cube", "pointmaze", "scene"))


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


# --- a quiet start -----------------------------------------------------------------------------------------


def test_headless_backend_only_when_unset_and_without_display():
    libraries = {"EGL": "libEGL.so.1", "OSMesa": "libOSMesa.so"}
    assert headless_backend({}, "linux", libraries.get) == "egl"
    assert headless_backend({}, "linux", {"OSMesa": "libOSMesa.so"}.get) == "osmesa"
    assert headless_backend({}, "linux", {}.get) == "disable"
    assert headless_backend({"DISPLAY": ""}, "linux", libraries.get) == "egl"
    assert headless_backend({"DISPLAY": ":0"}, "linux", libraries.get) is None
    assert headless_backend({"MUJOCO_GL": "glfw"}, "linux", libraries.get) is None
    assert headless_backend({}, "darwin", libraries.get) is None


def test_making_a_manipulation_env_prints_no_known_harmless_warning():
    code = (
        "import warnings, envs\n"
        "from tests.test_envs import env_cfg\n"
        "env = envs.make_env(env_cfg('cube'))\n"
        "env.reset(seed=0)\n"
        "env.step(env.action_space.sample())\n"
        "warnings.warn('other warnings still show')\n"
    )
    environ = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "MUJOCO_GL")}
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "DISPLAY environment variable is missing" not in result.stderr
    assert "precision lowered" not in result.stderr
    assert "UserWarning: other warnings still show" in result.stderr


# --- generation --------------------------------------------------------------------------------------------


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


def test_an_episode_depends_only_on_seed_and_index():
    collector = make_collector("puzzle-3x3-noisy-v0", max_episode_steps=40)  # noisy: random actions too
    first = collector.collect(seed=0, index=1)
    collector.collect(seed=0, index=0)
    again = collector.collect(seed=0, index=1)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key], err_msg=key)
    assert not np.array_equal(first["actions"], collector.collect(seed=1, index=1)["actions"])


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
