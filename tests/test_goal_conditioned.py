"""OGBench oraclerep tasks: names, the goal-conditioned wrapper, datasets with oracle_reps, tiny sampling."""

import jax
import numpy as np
import pytest
from omegaconf import OmegaConf

from buffers import make_goal_replay
from envs import goal_conditioned as gc
from envs.suite import dataset_name_of, is_goal_conditioned
from tests.helpers import CONFIGS


def env_cfg(name="cube-double-play-oraclerep-v0", task=None, **overrides):
    cfg = dict(
        name=name,
        task=task,
        sparse=False,
        max_episode_steps=None,
        dataset_path=None,
        dataset_dir="/nonexistent",
        download=False,
        success_timing=None,
        dataset_size=None,
        shards_in_memory=1,
        shard_interval=1000,
        generate=dict(num_episodes=None, max_episode_steps=None, workers=1, num_shards=None),
    )
    cfg.update(overrides)
    return cfg


@pytest.mark.parametrize(
    ("name", "env_id", "dataset"),
    [
        ("cube-quadruple-play-oraclerep-v0", "cube-quadruple-v0", "cube-quadruple-play-v0"),
        ("puzzle-4x5-play-oraclerep-v0", "puzzle-4x5-v0", "puzzle-4x5-play-v0"),
        (
            "humanoidmaze-giant-navigate-oraclerep-v0",
            "humanoidmaze-giant-v0",
            "humanoidmaze-giant-navigate-v0",
        ),
    ],
)
def test_names(name, env_id, dataset):
    assert is_goal_conditioned(name) and gc.env_id_of(name) == env_id and dataset_name_of(name) == dataset
    assert not is_goal_conditioned("cube-double-play-singletask-task2-v0")


@pytest.mark.parametrize(
    "name", ["cube-quadruple-oraclerep-v0", "cube-quadruple-play-v0", "cube-nonuple-play-oraclerep-v0"]
)
def test_unknown_names_fail_with_the_expected_form(name):
    with pytest.raises(ValueError, match=r"expected '<domain>-<dataset type>-oraclerep-v0'"):
        gc.env_id_of(name)


def test_wrapper_appends_the_goal_cycles_the_five_goals_and_reports_success():
    env = gc.make_env(env_cfg())
    assert env.goal_dim == 6 and env.observation_space.shape == (37 + 6,)
    tasks, goals = [], []
    for episode in range(7):
        observation, info = env.reset(seed=episode)
        tasks.append(info["task_id"])
        goals.append(observation[-6:])
        np.testing.assert_array_equal(observation[-6:], info["goal"])
        assert observation.shape == env.observation_space.shape
    assert tasks == [1, 2, 3, 4, 5, 1, 2]
    assert not np.allclose(goals[0], goals[1])  # five different evaluation goals
    observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
    np.testing.assert_array_equal(observation[-6:], goals[-1])  # the goal stays for the whole episode
    assert info["task_id"] == 2 and "success" in info


def test_reset_is_deterministic_in_the_seed_for_a_task():
    first, second = gc.make_env(env_cfg(task=3)), gc.make_env(env_cfg(task=3))
    a, info = first.reset(seed=11)
    first.reset(seed=5)
    b, _ = second.reset(seed=11)
    c, _ = first.reset(seed=11)
    goal_dim = first.goal_dim
    np.testing.assert_array_equal(a[:-goal_dim], b[:-goal_dim])  # the state: bit for bit
    np.testing.assert_array_equal(a[:-goal_dim], c[:-goal_dim])
    # The goal: OGBench settles the goal scene after placing it, which in one CI run of many moved a goal
    # coordinate by one float64 ulp (2.8e-17) between two envs; it is the same goal to that precision.
    np.testing.assert_allclose(a[-goal_dim:], b[-goal_dim:], rtol=0, atol=1e-12)
    np.testing.assert_allclose(a[-goal_dim:], c[-goal_dim:], rtol=0, atol=1e-12)
    assert info["task_id"] == 3
    d, info = first.reset(seed=11, options={"task_id": 4})
    assert info["task_id"] == 4 and not np.allclose(a[-6:], d[-6:])
    with pytest.raises(ValueError, match=r"env.task: expected null \(cycle\) or a task id in 1..5, found 6"):
        gc.make_env(env_cfg(task=6))


@pytest.mark.parametrize(
    "config", ["cube_double_oraclerep", "cube_quadruple_oraclerep", "puzzle_4x5_oraclerep"]
)
def test_env_configs_state_the_goal_dim_of_their_env(config):
    cfg = OmegaConf.load(CONFIGS / "env" / f"{config}.yaml")
    assert cfg.goal_conditioned is True
    assert gc.make_env(cfg).goal_dim == cfg.goal_dim


def test_dataset_carries_oracle_reps_and_feeds_the_goal_sampler(tiny_dataset_dir):
    env, eval_env, train, val = gc.make_env_and_datasets(env_cfg(dataset_dir=str(tiny_dataset_dir)), seed=0)
    num = len(train["observations"])
    assert train["oracle_reps"].shape == (num, 6) and val["oracle_reps"].shape[1] == 6
    assert set(train) == set(gc.DATASET_KEYS) and np.abs(train["actions"]).max() <= gc.ACTION_CLIP
    # OGBench's representation of a state: each cube's position, centred on (0.425, 0, 0) and scaled by 10
    with np.load(tiny_dataset_dir / "cube-double-play-v0.npz") as file:
        qpos, terminals = file["qpos"], file["terminals"]
    kept = qpos[~terminals.astype(bool)]  # the regular layout drops each episode's final state
    cubes = np.stack([kept[:, 14 + 7 * i : 17 + 7 * i] for i in range(2)], axis=1)
    np.testing.assert_allclose(
        train["oracle_reps"], ((cubes - [0.425, 0, 0]) * 10).reshape(num, 6), atol=1e-5
    )

    replay = make_goal_replay(train)
    batch = jax.jit(replay.sample, static_argnums=(1, 2, 3, 4))(jax.random.PRNGKey(0), 32, 25, 0.999, False)
    observations = np.asarray(batch["observations"])
    assert observations.shape == (32, 37 + 6) and batch["actions"].shape == (32, 25, 5)
    reps = train["oracle_reps"]
    assert all(
        np.any(np.all(reps == goal, axis=1)) for goal in observations[:, -6:]
    )  # goals are dataset reps
    assert np.all(np.isfinite(observations)) and 0 < float(batch["backup_masks"].mean()) < 1
