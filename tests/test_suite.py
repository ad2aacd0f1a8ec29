"""envs/suite.py: OGBench single-task names and the envs they make (through envs.make_env)."""

import numpy as np
import pytest

from envs import dataset_file_name, domain_of, make_env, sparse_rewards
from envs.suite import SparseReward
from tests.helpers import env_cfg

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


# --- QAM's locomotion domains (their data downloads only: envs/datasets.py) ---------------------------------


@pytest.mark.parametrize(
    ("group", "dims"),
    [
        ("antmaze_large", (29, 8)),
        ("antmaze_giant", (29, 8)),
        ("humanoidmaze_medium", (69, 21)),
        ("humanoidmaze_large", (69, 21)),
    ],
)
def test_locomotion_envs_build_and_reset(group, dims):
    env = make_env(env_cfg(group))
    observation, _ = env.reset(seed=0)
    assert (observation.shape[0], env.action_space.shape[0]) == dims
    assert domain_of(env_cfg(group).name) == group.replace("_", "-")
