"""Small helpers shared by tests."""

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import agents  # noqa: F401  registers each Config's defaults, which configs/agent/*.yaml build on

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
REPO = CONFIGS.parent


def script_env(**variables: str) -> dict:
    """The environment of a subprocess running this checkout's code: its packages first on PYTHONPATH."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **variables, "PYTHONPATH": path}


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    """`python launch/<script> <args>` to its end, its output captured."""
    command = [sys.executable, f"launch/{script}", *args]
    return subprocess.run(command, cwd=REPO, env=script_env(), capture_output=True, text=True)


class Launched:
    """`python launch/<script> <args>` in a subprocess in its own process group (a terminal's, a SLURM job
    step's), with `variables` in its environment, its output read line by line as it comes."""

    def __init__(self, script: str, *args: str, **variables: str):
        self.process = subprocess.Popen(
            [sys.executable, f"launch/{script}", *args],
            cwd=REPO,
            env=script_env(**variables),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        """Until a line holding `text` is printed (`timeout` seconds at most between two lines)."""
        while (line := self.lines.get(timeout=timeout)) is not None:
            if text in line:
                return
        raise AssertionError(f"the run ended before printing {text!r}:\n{''.join(self.output)[-3000:]}")

    def exit_code(self, timeout: float = 300) -> int:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        self.process.stdout.close()
        return code


def compose_config(*overrides: str):
    """The run config that `python launch/train.py <overrides>` would see."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose("config", overrides=list(overrides))


class Interrupt(Exception):
    """Stands for a kill: raised from inside a run."""


def train_interrupted(train, cfg, run_dir, monkeypatch, online_dispatch: int) -> None:
    """Runs `train(cfg, run_dir)` and kills it at its `online_dispatch`-th online update dispatch."""
    from launch.engine.run import Run

    original = Run.update
    calls = {"online": 0}

    def interrupting_train(self, num_updates, online):
        calls["online"] += online
        if calls["online"] == online_dispatch:
            raise Interrupt
        return original(self, num_updates, online)

    monkeypatch.setattr(Run, "update", interrupting_train)
    try:
        train(cfg, run_dir)
    except Interrupt:
        pass
    else:
        raise AssertionError(f"the run finished before its online dispatch {online_dispatch}")
    finally:
        monkeypatch.setattr(Run, "update", original)


# --- envs/: the tiny datasets of tests/conftest.py and configs/env -----------------------------------------

CUBE, MAZE = "cube-double-play-v0", "pointmaze-medium-navigate-v0"
STEPS = 201  # per episode in the tiny datasets (tests/conftest.py)


def env_cfg(group: str, **overrides):
    """configs/env/<group>.yaml as Hydra composes it, with dotted-key overrides (`generate__workers=2`)."""
    root = OmegaConf.create({"env": OmegaConf.load(CONFIGS / "env" / f"{group}.yaml")})
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


def write_visual_dataset(state_file: Path, path: Path) -> Path:
    """The first episode of a tiny state dataset of cube-double (its qpos, buttons and actions) with random
    64x64x3 frames for observations: what a visual run checks and relabels, rendered by no one."""
    rng = np.random.default_rng(0)
    train, val = load_pair(state_file)
    end = int(np.argmax(train["terminals"])) + 1
    pairs = []
    for arrays in (train, val):
        arrays = {key: array[:end] for key, array in arrays.items()}
        arrays["observations"] = rng.integers(0, 256, (end, 64, 64, 3), np.uint8)
        pairs.append(arrays)
    return write_pair(path, *pairs)
