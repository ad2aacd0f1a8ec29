"""One door to every env name: each function sends a name to the module that makes its envs and datasets.

- robomimic names ('lift-mh-low_dim'): envs/robomimic.py;
- OGBench's goal-conditioned oraclerep names ('cube-quadruple-play-oraclerep-v0'): envs/goal_conditioned.py;
- OGBench's single-task names ('cube-double-play-singletask-task2-v0'): envs/suite.py makes the envs,
  envs/datasets.py finds, checks and loads the data.

Only this module knows all three; none of them imports it or another of them, so envs/ has no import circle.
"""

from collections.abc import Sequence
from pathlib import Path

import gymnasium

from envs import datasets, goal_conditioned, provenance, robomimic, suite
from envs.config import EnvConfig, cfg_value


def domain_of(name: str) -> str:
    """The words before the dataset type ('cube-double', 'pointmaze-medium'); keys per-domain hyperparameters.

    Works for single-task names, dataset names ('cube-double-play-v0') and variants with extra words after the
    dataset type ('puzzle-3x3-play-sparse-singletask-task1-v0' -> 'puzzle-3x3'). A robomimic name's domain is
    its task ('lift-mh-low_dim' -> 'lift').
    """
    if robomimic.is_robomimic(name):
        return robomimic.task_of(name)
    return suite.domain_of(name)


def make_env(env_cfg) -> gymnasium.Env:
    """The env of `env_cfg.name`: OGBench's single-task env (envs/suite.py `make_env`), a goal-conditioned
    oraclerep env (envs/goal_conditioned.py) or a robomimic env (envs/robomimic.py)."""
    if robomimic.is_robomimic(cfg_value(env_cfg, "name")):
        return robomimic.make_env(env_cfg)
    if suite.is_goal_conditioned(EnvConfig.from_cfg(env_cfg).name):
        return goal_conditioned.make_env(env_cfg)
    return suite.make_env(env_cfg)


def make_offline_env(env_cfg) -> gymnasium.Env:
    """`make_env`, except that an OGBench visual env is its unrendered state twin with the visual env's
    spaces (envs/suite.py `make_offline_env`): what the trainer checks data and takes spaces from."""
    name = cfg_value(env_cfg, "name")
    if robomimic.is_robomimic(name) or suite.is_goal_conditioned(EnvConfig.from_cfg(env_cfg).name):
        return make_env(env_cfg)
    return suite.make_offline_env(env_cfg)


def make_env_and_datasets(env_cfg, seed: int) -> tuple[gymnasium.Env, gymnasium.Env, dict, dict | None]:
    """The training env, the evaluation env, and the train and validation datasets of `env_cfg`.

    OGBench's single-task names: envs/datasets.py `make_env_and_datasets`; oraclerep names:
    envs/goal_conditioned.py; robomimic names: envs/robomimic.py (one file, no validation set: None).
    """
    if robomimic.is_robomimic(cfg_value(env_cfg, "name")):
        return robomimic.make_env_and_datasets(env_cfg, seed)
    if suite.is_goal_conditioned(EnvConfig.from_cfg(env_cfg).name):
        return goal_conditioned.make_env_and_datasets(env_cfg, seed)
    return datasets.make_env_and_datasets(env_cfg, seed)


def resolve_dataset(env_cfg, seed: int) -> Path:
    """The train file for `env_cfg`: envs/datasets.py `locate_dataset`, or robomimic's file."""
    if robomimic.is_robomimic(cfg_value(env_cfg, "name")):
        return robomimic.dataset_path(env_cfg)
    return datasets.locate_dataset(env_cfg, seed).path


def describe_dataset(env_cfg, path: Path, transitions: int) -> dict:
    """What a run records of the dataset it trains on (envs/provenance.py `describe`): a file without a
    generation record under its publisher's name (OGBench's, or robomimic's) counts as downloaded."""
    name = cfg_value(env_cfg, "name")
    published = robomimic.is_robomimic(name) or Path(path).name == suite.dataset_file_name(name)
    return provenance.describe(Path(path), transitions, published)


def load_tasks(env_cfgs: Sequence, seed: int) -> dict:
    """The train dataset that `env_cfgs` (tasks of one domain, read from one file) share, its rewards and
    masks (tasks, transitions): envs/datasets.py `load_tasks`; a robomimic file holds one task."""
    first = env_cfgs[0]
    if robomimic.is_robomimic(cfg_value(first, "name")):
        env, eval_env, train, _ = robomimic.make_env_and_datasets(first, seed)
        env.close()
        eval_env.close()
        return {**train, "rewards": train["rewards"][None], "masks": train["masks"][None]}
    return datasets.load_tasks(env_cfgs, seed)
