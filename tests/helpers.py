"""Small helpers shared by tests."""

from pathlib import Path

from hydra import compose, initialize_config_dir

import agents  # noqa: F401  registers each Config's defaults, which configs/agent/*.yaml build on

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def compose_config(*overrides: str):
    """The run config that `python launch/train.py <overrides>` would see."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose("config", overrides=list(overrides))


class Interrupt(Exception):
    """Stands for a kill: raised from inside a run."""


def train_interrupted(train, cfg, run_dir, monkeypatch, online_dispatch: int) -> None:
    """Runs `train(cfg, run_dir)` and kills it at its `online_dispatch`-th online update dispatch."""
    from launch.run import Run

    original = Run.train
    calls = {"online": 0}

    def interrupting_train(self, num_updates, online):
        calls["online"] += online
        if calls["online"] == online_dispatch:
            raise Interrupt
        return original(self, num_updates, online)

    monkeypatch.setattr(Run, "train", interrupting_train)
    try:
        train(cfg, run_dir)
    except Interrupt:
        pass
    else:
        raise AssertionError(f"the run finished before its online dispatch {online_dispatch}")
    finally:
        monkeypatch.setattr(Run, "train", original)
