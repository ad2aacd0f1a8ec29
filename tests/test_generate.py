"""envs/generate.py: local generation of OGBench datasets with the scripted oracles, on tiny data; real
signals sent to the process group of `python launch/make_dataset.py` and `python launch/train.py` while they
generate."""

import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import ogbench
import psutil
import pytest

from envs import (
    DatasetError,
    describe_dataset,
    generate_dataset,
    load_tasks,
    make_env,
    resolve_dataset,
    validate_dataset,
)
from envs import generate as generate_module
from envs.file_format import FILE_DTYPES
from preemption import INTERRUPTED_EXIT_CODE, PAUSE_ENV
from tests.helpers import CUBE, MAZE, STEPS, Launched, env_cfg, load_pair, run_script, write_pair
from tests.test_train import TINY

# 6 + 1 validation episodes of 30 steps; the command pauses once 2 are collected, until the signal arrives
GENERATE = ["env=pointmaze", "env.generate.num_episodes=6", "env.generate.max_episode_steps=30"]


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


class Command(Launched):
    """`python launch/<script>` in its own process group, paused once 2 episodes are collected (PAUSE_ENV)."""

    def __init__(self, script: str, *overrides: str):
        super().__init__(script, *overrides, **{PAUSE_ENV: "generate:2"})

    def signal_when_paused(self, signum: int) -> list[psutil.Process]:
        """Sends `signum` to the whole process group once paused; returns the children it had then."""
        self.wait_for("paused at generate:2", timeout=120)
        children = psutil.Process(self.process.pid).children(recursive=True)
        os.killpg(self.process.pid, signum)
        return children


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of `processes` still running a second after the parent's exit (a zombie runs nothing)."""
    deadline = time.monotonic() + 1
    while True:
        running = []
        for process in processes:
            try:
                if process.status() != psutil.STATUS_ZOMBIE:
                    running.append(process)
            except psutil.NoSuchProcess:
                pass
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.05)


def assert_stopped(command: Command, signum: int, dataset_dir: Path, workers: int) -> None:
    """Exit 75 within seconds, one line saying what was interrupted, no process left, no dataset file."""
    children = command.signal_when_paused(signum)
    signalled = time.monotonic()
    code = command.exit_code(timeout=30)
    seconds = time.monotonic() - signalled
    output = "".join(command.output)
    assert code == INTERRUPTED_EXIT_CODE, output[-3000:]
    assert seconds < 10, f"exit {seconds:.1f} s after the signal"
    if workers > 1:
        assert len(children) >= workers, children  # the workers (and multiprocessing's resource tracker)
    assert alive(children) == []
    name = signal.Signals(signum).name
    said = f"generating {MAZE}-ep6-len30-s0.npz: interrupted by {name} after 2 of 7 episodes; nothing written"
    assert len(re.findall(re.escape(said), output)) == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert [
        path.name for path in dataset_dir.iterdir() if ".npz" in path.name and not path.name.startswith(".")
    ] == []
    assert [path.name for path in dataset_dir.iterdir() if path.name.endswith(".tmp")] == []


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2], ids=lambda s: s.name
)
def test_make_dataset_stops_at_a_signal_to_its_process_group(tmp_path, signum):
    dataset_dir = tmp_path / "data"
    overrides = [*GENERATE, f"env.dataset_dir={dataset_dir}", "env.download=false", "env.generate.workers=2"]
    assert_stopped(Command("make_dataset.py", *overrides), signum, dataset_dir, workers=2)


def test_make_dataset_reruns_an_interrupted_generation_in_process(tmp_path):
    dataset_dir = tmp_path / "data"
    overrides = [*GENERATE, f"env.dataset_dir={dataset_dir}", "env.download=false", "env.generate.workers=1"]
    assert_stopped(Command("make_dataset.py", *overrides), signal.SIGINT, dataset_dir, workers=1)
    rerun = run_script("make_dataset.py", *overrides)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "source: generated" in rerun.stdout
    assert "steps: 180 in 6 episodes (validation: 30 in 1)" in rerun.stdout


def test_train_stops_at_a_signal_while_generating_its_dataset_and_its_rerun_trains(tmp_path):
    dataset_dir, run_dir = tmp_path / "data", tmp_path / "run"
    overrides = ["agent=qc_fql", *GENERATE, f"env.dataset_dir={dataset_dir}", "env.download=false"]
    overrides += ["env.generate.workers=2", "logger.mode=disabled", *TINY, f"hydra.run.dir={run_dir}"]
    assert_stopped(Command("train.py", *overrides), signal.SIGTERM, dataset_dir, workers=2)
    rerun = run_script("train.py", *overrides)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (run_dir / "metrics.jsonl").is_file()


@pytest.mark.render
def test_a_visual_dataset_is_generated_as_uint8_frames_with_its_provenance(tmp_path, monkeypatch):
    """2 + 1 episodes of 6 steps of visual-cube-double, rendered (OSMesa here) in a worker process (never the
    caller's), loaded as uint8 frames."""
    monkeypatch.setenv("MUJOCO_GL", os.environ.get("MUJOCO_GL", "osmesa"))
    cfg = env_cfg(
        "visual_cube",
        dataset_dir=str(tmp_path),
        download=False,
        generate__num_episodes=2,
        generate__max_episode_steps=6,
        generate__workers=1,
    )
    train = load_tasks([cfg], seed=0)  # checked and relabelled unrendered, as the trainer does
    assert train["observations"].dtype == train["next_observations"].dtype == np.uint8
    assert train["observations"].shape == (2 * 5, 64, 64, 3) and train["rewards"].shape == (1, 10)
    np.testing.assert_array_equal(train["observations"][1:5], train["next_observations"][:4])
    assert len(np.unique(train["observations"].reshape(10, -1), axis=0)) > 7  # frames change
    path = resolve_dataset(cfg, 0)
    arrays, val = load_pair(path)
    assert arrays["observations"].dtype == np.uint8 and arrays["observations"].shape == (12, 64, 64, 3)
    assert val["observations"].shape == (6, 64, 64, 3)
    record = describe_dataset(cfg, path, len(train["actions"]))
    assert record["source"] == "generated" and record["transitions"] == 10, record
