"""Small helpers shared by tests."""

from pathlib import Path

from hydra import compose, initialize_config_dir

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def compose_config(*overrides: str):
    """The run config that `python launch/train.py <overrides>` would see."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose("config", overrides=list(overrides))
