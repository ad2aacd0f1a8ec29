"""envs/robomimic.py on a tiny file in robomimic's exact layout, recorded by stepping robosuite's Lift env.

The file is written once per session (kept in $CHUNKRL_TEST_DATA when set) the way robomimic's
dataset_states_to_obs.py writes one: obs[t + 1] = next_obs[t], reward = the success reward after the step,
done = success or the demo's last step. Demos are named demo_1, demo_2, demo_10 so that numeric and lexical
order differ; in demo_10 the cube is lifted by hand for a few steps, so rewards and dones are not all zero.
"""

import json
import os
import re
import shutil
from pathlib import Path

import h5py
import mujoco
import numpy as np
import pytest
from omegaconf import OmegaConf

import buffers
import envs
from envs import DatasetError
from envs import robomimic as rm
from launch import train as train_module
from tests.helpers import compose_config

robosuite = rm.import_robosuite()  # with a clear error where the robomimic extra is missing or mismatched

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "env"
DEMOS = {1: dict(steps=12, seed=11), 2: dict(steps=8, seed=12), 10: dict(steps=10, seed=13, lift_at=4)}
EXTRA_KEY = "robot0_joint_pos"  # real files hold more keys than the four observed ones
LIFT_KWARGS = dict(
    robots=["Panda"],
    control_freq=20,
    has_renderer=False,
    has_offscreen_renderer=False,
    ignore_done=True,
    use_object_obs=True,
    use_camera_obs=False,
    camera_depths=False,
    reward_shaping=False,
)


def env_cfg(group: str = "lift", **overrides):
    """configs/env/<group>.yaml as Hydra composes it, with overrides."""
    root = OmegaConf.create({"env": OmegaConf.load(CONFIGS / f"{group}.yaml")})
    for key, value in overrides.items():
        OmegaConf.update(root, f"env.{key}", value)
    return root.env


def lift_cube(robosuite_env, height: float = 0.2) -> None:
    """Moves Lift's cube `height` metres up (at rest), which makes the task's success check hold."""
    joint = robosuite_env.cube.joints[0]
    qpos = robosuite_env.sim.data.get_joint_qpos(joint).copy()
    qpos[2] += height
    robosuite_env.sim.data.set_joint_qpos(joint, qpos)
    robosuite_env.sim.data.set_joint_qvel(joint, np.zeros(6))
    robosuite_env.sim.forward()


def robomimic_obs(raw: dict) -> dict:
    keys = (*rm.OBS_KEYS[:-1], EXTRA_KEY)
    return {**{key: np.array(raw[key]) for key in keys}, "object": np.array(raw["object-state"])}


def write_tiny_file(path: Path) -> None:
    from robosuite.controllers import load_composite_controller_config

    kwargs = {**LIFT_KWARGS, "controller_configs": load_composite_controller_config("BASIC", robot="Panda")}
    env = robosuite.make("Lift", **kwargs)
    meta = {"env_name": "Lift", "env_version": robosuite.__version__, "type": 1, "env_kwargs": kwargs}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with h5py.File(tmp, "w") as file:
        data = file.create_group("data")
        data.attrs["env_args"] = json.dumps(meta)
        for index, spec in DEMOS.items():
            np.random.seed(spec["seed"])
            obs = robomimic_obs(env.reset())
            actions = np.random.default_rng(spec["seed"]).uniform(-1, 1, (spec["steps"], 7))
            record = {"obs": [], "next_obs": [], "rewards": [], "dones": []}
            for t, action in enumerate(actions):
                env.step(action)
                if t == spec.get("lift_at"):
                    lift_cube(env)
                next_obs = robomimic_obs(env._get_observations(force_update=True))
                record["obs"].append(obs)
                record["next_obs"].append(next_obs)
                record["rewards"].append(env.reward())
                record["dones"].append(int(env._check_success() or t == len(actions) - 1))
                obs = next_obs
            demo = data.create_group(f"demo_{index}")
            demo.attrs["num_samples"] = len(actions)
            demo.create_dataset("actions", data=actions)
            demo.create_dataset("rewards", data=np.array(record["rewards"], np.float64))
            demo.create_dataset("dones", data=np.array(record["dones"], np.int64))
            for group in ("obs", "next_obs"):
                for key in record[group][0]:
                    demo.create_dataset(
                        f"{group}/{key}", data=np.stack([step[key] for step in record[group]])
                    )
        data.attrs["total"] = sum(spec["steps"] for spec in DEMOS.values())
    env.close()
    tmp.rename(path)


@pytest.fixture(scope="session")
def tiny_file(tmp_path_factory) -> Path:
    cache = os.environ.get("CHUNKRL_TEST_DATA")
    directory = Path(cache) if cache else tmp_path_factory.mktemp("robomimic")
    path = directory / f"robomimic-lift-tiny-rs{robosuite.__version__}-mj{mujoco.__version__}.hdf5"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        write_tiny_file(path)
    return path


@pytest.fixture(scope="module")
def lift_env(tiny_file):
    env = envs.make_env(env_cfg(dataset_path=str(tiny_file)))
    yield env
    env.close()


def demo_arrays(path: Path, index: int) -> dict:
    with h5py.File(path, "r") as file:
        demo = file[f"data/demo_{index}"]
        arrays = {key: np.array(demo[key]) for key in ("actions", "rewards", "dones")}
        for group in ("obs", "next_obs"):
            arrays[group] = np.concatenate([np.array(demo[f"{group}/{key}"]) for key in rm.OBS_KEYS], axis=1)
    return arrays


def mutated_copy(tiny_file: Path, tmp_path: Path, edit) -> Path:
    path = tmp_path / "low_dim_v15.hdf5"
    shutil.copy(tiny_file, path)
    with h5py.File(path, "r+") as file:
        edit(file)
    return path


def replaced(where: str, array: np.ndarray):
    """An edit of an open HDF5 file that puts `array` in place of the dataset at `where`."""

    def edit(file) -> None:
        del file[where]
        file.create_dataset(where, data=array)

    return edit


# --- names and config ----------------------------------------------------------------------------------


def test_names_route_to_robomimic_and_their_domain_is_the_task():
    for name, task in (
        ("lift-mh-low_dim", "lift"),
        ("can-mh-low_dim", "can"),
        ("square-ph-low_dim", "square"),
    ):
        assert rm.is_robomimic(name) and envs.domain_of(name) == task
    assert not rm.is_robomimic("cube-double-play-singletask-task2-v0")
    for bad in ("transport-mh-low_dim", "lift-mg-low_dim", "lift-low_dim"):
        with pytest.raises(ValueError, match=f"unknown robomimic env '{bad}'.*'lift', 'can', 'square'"):
            envs.domain_of(bad)


def test_configs_name_the_paper_tasks_limits_and_default_paths(tmp_path):
    for task, limit in (("lift", 300), ("can", 300), ("square", 400)):
        cfg = rm.RobomimicConfig.from_cfg(env_cfg(task, dataset_dir=str(tmp_path)))
        assert (cfg.task, cfg.dataset_type, cfg.max_episode_steps) == (task, "mh", limit)
        assert cfg.path == tmp_path / task / "mh" / "low_dim_v15.hdf5"
    assert env_cfg("lift").dataset_dir == "~/.robomimic"
    explicit = rm.RobomimicConfig.from_cfg(env_cfg("can", dataset_path="/data/x.hdf5", max_episode_steps=7))
    assert (explicit.path, explicit.max_episode_steps) == (Path("/data/x.hdf5"), 7)
    with pytest.raises(ValueError, match="env.sparse: expected true"):
        rm.RobomimicConfig.from_cfg(env_cfg("lift", sparse=False))
    with pytest.raises(ValueError, match="env.max_episode_steps: expected null or an integer >= 1, found 0"):
        rm.RobomimicConfig.from_cfg(env_cfg("lift", max_episode_steps=0))


def test_missing_file_names_the_path_and_the_download(tmp_path):
    expected = tmp_path / "square" / "mh" / "low_dim_v15.hdf5"
    for make in (envs.make_env, lambda cfg: envs.make_env_and_datasets(cfg, seed=0)):
        with pytest.raises(DatasetError) as error:
            make(env_cfg("square", dataset_dir=str(tmp_path)))
        message = str(error.value)
        assert message.startswith(f"{expected}: expected robomimic's square (mh) low_dim_v15.hdf5")
        assert (
            f"python -m robomimic.scripts.download_datasets --download_dir {tmp_path} --tasks square "
            "--dataset_types mh --hdf5_types low_dim" in message
        )


# --- loading and validation ----------------------------------------------------------------------------


def test_load_concatenates_the_four_keys_in_numeric_demo_order(tiny_file):
    dataset = rm.load_dataset(tiny_file)
    demos = [demo_arrays(tiny_file, index) for index in (1, 2, 10)]  # numeric order
    assert all(value.dtype == np.float32 for value in dataset.values())
    assert dataset["observations"].shape == (30, 3 + 4 + 2 + 10) and dataset["actions"].shape == (30, 7)
    for key, source in (("observations", "obs"), ("next_observations", "next_obs"), ("actions", "actions")):
        expected = np.concatenate([demo[source] for demo in demos]).astype(np.float32)
        np.testing.assert_array_equal(dataset[key], expected)
    lexical = np.concatenate([demo["obs"] for demo in (demos[0], demos[2], demos[1])]).astype(np.float32)
    assert not np.array_equal(dataset["observations"], lexical)
    with h5py.File(tiny_file, "r") as file:
        object_state = np.array(file["data/demo_1/obs/object"], np.float32)
    np.testing.assert_array_equal(dataset["observations"][:12, 9:], object_state)


def test_rewards_are_success_minus_one_and_masks_follow_dones(tiny_file):
    dataset = rm.load_dataset(tiny_file)
    rewards = np.concatenate([demo_arrays(tiny_file, index)["rewards"] for index in (1, 2, 10)])
    dones = np.concatenate([demo_arrays(tiny_file, index)["dones"] for index in (1, 2, 10)])
    assert rewards.max() == 1.0 and dones[:-1].sum() > 2  # the lifted cube: successes inside demo_10
    np.testing.assert_array_equal(dataset["rewards"], rewards - 1.0)
    np.testing.assert_array_equal(dataset["masks"], 1.0 - dones)
    np.testing.assert_array_equal(np.flatnonzero(dataset["terminals"]), [11, 19, 29])


def test_dataset_goes_into_the_replay(tiny_file):
    dataset = rm.load_dataset(tiny_file)
    store = buffers.from_dataset(dataset)  # checks next_observations against the following observations
    assert int(store.terminals[:30].sum()) == 3


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda f: f["data/demo_2/obs"].pop("object"),
            r"data/demo_2: missing 'obs/object'; data/demo_2/obs holds",
        ),
        (
            replaced("data/demo_10/actions", np.zeros((10, 6))),
            r"data/demo_10/actions has shape \(10, 6\), expected \(10, 7\)",
        ),
        (
            lambda f: f["data/demo_1/next_obs/robot0_eef_pos"].__setitem__((5, 1), np.nan),
            r"data/demo_1/next_obs/robot0_eef_pos holds non-finite values \(first at step 5\)",
        ),
        (
            replaced("data/demo_2/rewards", np.zeros(7)),
            r"data/demo_2/rewards has shape \(7,\), expected \(8,\)",
        ),
        (lambda f: f["data"].create_group("mask"), r"data/mask: expected only groups named demo_<n>"),
        (lambda f: f["data"].attrs.__delitem__("env_args"), r"expected the env metadata in data.attrs"),
    ],
)
def test_bad_files_name_the_file_demo_and_key(tiny_file, tmp_path, edit, match):
    path = mutated_copy(tiny_file, tmp_path, edit)
    with pytest.raises(DatasetError, match=f"^{re.escape(str(path))}: .*{match}"):
        envs.make_env_and_datasets(env_cfg(dataset_path=str(path)), seed=0)


# --- the env -------------------------------------------------------------------------------------------


def test_env_is_built_from_the_file_metadata_and_replays_its_demos(lift_env, tiny_file):
    assert lift_env.observation_space.shape == (19,) and lift_env.observation_space.dtype == np.float32
    assert lift_env.action_space.shape == (7,) and lift_env.spec.max_episode_steps == 300
    assert type(lift_env.unwrapped.env).__name__ == "Lift"
    demo = demo_arrays(tiny_file, 2)
    observation, info = lift_env.reset(seed=DEMOS[2]["seed"])  # the seed the demo was recorded with
    assert observation.dtype == np.float32 and info == {"success": 0.0}
    np.testing.assert_allclose(observation, demo["obs"][0], rtol=0, atol=1e-6)
    for action, next_obs in zip(demo["actions"], demo["next_obs"], strict=True):
        observation, reward, terminated, truncated, info = lift_env.step(action)
        assert (reward, terminated, truncated, info) == (-1.0, False, False, {"success": 0.0})
        np.testing.assert_allclose(observation, next_obs, rtol=0, atol=1e-5)


def test_reset_is_a_function_of_the_seed_alone(lift_env):
    first, _ = lift_env.reset(seed=123)
    lift_env.step(lift_env.action_space.sample())
    other, _ = lift_env.reset(seed=7)
    again, _ = lift_env.reset(seed=123)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_success_ends_the_episode_with_reward_zero(lift_env):
    lift_env.reset(seed=0)
    lift_cube(lift_env.unwrapped.env)
    _, reward, terminated, truncated, info = lift_env.step(np.zeros(7))
    assert (reward, terminated, truncated, info) == (0.0, True, False, {"success": 1.0})


def test_time_limit_is_configurable(tiny_file):
    env = envs.make_env(env_cfg(dataset_path=str(tiny_file), max_episode_steps=2))
    env.reset(seed=0)
    ends = [env.step(np.zeros(7))[3] for _ in range(2)]
    assert ends == [False, True] and env.spec.max_episode_steps == 2
    env.close()


# --- end to end ----------------------------------------------------------------------------------------


def test_offline_to_online_training_on_the_tiny_file(tiny_file, tmp_path):
    cfg = compose_config(
        "agent=qc_fql",
        "preset=debug",
        "env=lift",
        f"env.dataset_path={tiny_file}",
        "env.max_episode_steps=15",
        "offline_steps=20",
        "online_steps=30",
        "start_training=10",
        "eval_episodes=1",
        "agent.hidden_dims=[16,16]",
        "batch_size=16",
        "log_interval=10",
        "updates_per_dispatch=10",
        "buffer_size=2000",
        "logger.mode=disabled",
    )
    run = train_module.train(cfg, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "offline/critic/critic_loss" in row] == [10, 20]
    episodes = [row for row in rows if "online/episode_length" in row]
    assert [row["online/episode_length"] for row in episodes] == [15, 15]
    assert all(row["online/episode_return"] == -15.0 for row in episodes)
    assert [(row["phase"], row["step"]) for row in rows if "eval/success" in row] == [
        ("offline", 20),
        ("online", 50),
    ]
    assert any("online/critic/critic_loss" in row for row in rows)
    assert set(run.counters.runs[0].success) == {"offline", "online"}
