"""OGBench's goal-conditioned `oraclerep` tasks (DQC's setting, spec dqc.md): names, envs, datasets.

A name reads `<domain>-<dataset type>-oraclerep-<version>`, e.g. `cube-quadruple-play-oraclerep-v0`. As in
`ogbench.make_env_and_datasets`, the env is `<domain>-<version>` made with `use_oracle_rep=True` (its goal,
`info["goal"]` at reset, is the goal state's oracle representation: the cubes' scaled positions, the
puzzle's button states, a maze's x-y), and the data is the standard `<domain>-<dataset type>-<version>.npz`,
found, downloaded or generated like every dataset here (envs/datasets.py). OGBench's loader adds
`oracle_reps` (the same representation of every dataset state) from the file's qpos and button states.

The agent sees one vector, the observation followed by the goal representation (GoalConditioned): the
critics condition on both, DQC's behaviour model on the observation part only (agents/dqc.py). Evaluation is
OGBench's: each env has five evaluation goals (task_id 1..5), success at an episode's last step.
"""

import logging

import gymnasium
import numpy as np
import ogbench

from envs.config import EnvConfig, cfg_value
from envs.datasets import locate_dataset, validate_dataset
from envs.suite import DATASET_TYPES, ORACLEREP, SeededReset

logger = logging.getLogger(__name__)

DATASET_KEYS = ("observations", "actions", "terminals", "next_observations", "oracle_reps")
# The reference clips the dataset's actions into the open interval, away from the behaviour model's bounds.
ACTION_CLIP = 1.0 - 1e-5


def env_id_of(name: str) -> str:
    """The gymnasium id: 'cube-quadruple-play-oraclerep-v0' -> 'cube-quadruple-v0'."""
    splits = name.split("-")
    env_id = "-".join(splits[:-3] + splits[-1:])
    well_formed = len(splits) >= 4 and splits[-2] == ORACLEREP and splits[-3] in DATASET_TYPES
    if not well_formed or env_id not in gymnasium.registry:
        raise ValueError(
            f"unknown goal-conditioned env '{name}': expected '<domain>-<dataset type>-oraclerep-v0' (e.g. "
            f"'cube-quadruple-play-oraclerep-v0') with a dataset type in {DATASET_TYPES} and "
            "'<domain>-v0' one of OGBench's goal-conditioned environments"
        )
    return env_id


def oracle_rep(env: gymnasium.Env) -> np.ndarray:
    """The oracle representation of the env's current state (manipulation: compute_oracle_observation,
    mazes: get_oracle_rep)."""
    unwrapped = env.unwrapped
    compute = getattr(unwrapped, "compute_oracle_observation", None) or unwrapped.get_oracle_rep
    return np.asarray(compute())


class GoalConditioned(gymnasium.Wrapper):
    """Observations are `observation (+) goal representation`; reset picks OGBench's evaluation goal.

    The goal is `options["task_id"]` when given, else the fixed `task_id`, else it cycles: the i-th reset
    (from 0) of this wrapper takes task i % num_tasks + 1, so a run of 5k evaluation episodes visits each of
    the five goals k times. `info["task_id"]` names it at reset and every step; `info["success"]` is
    OGBench's. With the task fixed, `reset(seed=s)` is a function of s (wrap a SeededReset env).
    """

    def __init__(self, env: gymnasium.Env, task_id: int | None = None):
        super().__init__(env)
        self.num_tasks = len(env.unwrapped.task_infos)
        if task_id is not None and not 1 <= task_id <= self.num_tasks:
            raise ValueError(
                f"env.task: expected null (cycle) or a task id in 1..{self.num_tasks}, found {task_id}"
            )
        self.task_id = task_id
        self.episodes = 0
        self.goal_dim = len(oracle_rep(env))
        space = env.observation_space
        low = np.concatenate([space.low, np.full(self.goal_dim, -np.inf)]).astype(space.dtype)
        high = np.concatenate([space.high, np.full(self.goal_dim, np.inf)]).astype(space.dtype)
        self.observation_space = gymnasium.spaces.Box(low, high, dtype=space.dtype)
        self._goal = np.zeros(self.goal_dim, space.dtype)
        self._current_task = 1

    def _with_goal(self, observation: np.ndarray) -> np.ndarray:
        return np.concatenate([observation, self._goal]).astype(self.observation_space.dtype)

    def reset(self, *, seed=None, options=None):
        options = dict(options or {})
        if "task_id" not in options:
            options["task_id"] = self.task_id or self.episodes % self.num_tasks + 1
        self.episodes += 1
        self._current_task = int(options["task_id"])
        observation, info = self.env.reset(seed=seed, options=options)
        self._goal = np.asarray(info["goal"], self.observation_space.dtype)
        info["task_id"] = self._current_task
        return self._with_goal(observation), info

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        info["task_id"] = self._current_task
        return self._with_goal(observation), reward, terminated, truncated, info


def make_env(env_cfg) -> GoalConditioned:
    """The goal-conditioned env of `env_cfg.name` (task `env_cfg.task`: null cycles the five goals).

    Episodes end on success or at OGBench's time limit (or `env_cfg.max_episode_steps`).
    """
    cfg = EnvConfig.from_cfg(env_cfg)
    env = gymnasium.make(env_id_of(cfg.name), use_oracle_rep=True, max_episode_steps=cfg.max_episode_steps)
    return GoalConditioned(SeededReset(env), cfg_value(env_cfg, "task"))


def make_env_and_datasets(env_cfg, seed: int) -> tuple[GoalConditioned, GoalConditioned, dict, dict]:
    """The training env, the evaluation env, and the train and validation datasets of an oraclerep task.

    The datasets map DATASET_KEYS to float32 arrays, one row per transition: OGBench's regular (non-compact)
    layout plus `oracle_reps` (transitions, goal_dim), the representation of each observation. There are no
    rewards: the goal sampler (buffers/goals.py) relabels them. Actions are clipped to +-ACTION_CLIP.
    """
    cfg = EnvConfig.from_cfg(env_cfg)
    env, eval_env = make_env(env_cfg), make_env(env_cfg)
    path = locate_dataset(env_cfg, seed).path
    counts = validate_dataset(path, env.env, cfg.name)
    datasets = ogbench.make_env_and_datasets(
        cfg.name, dataset_path=str(path), compact_dataset=False, dataset_only=True, cur_env=env.unwrapped
    )
    train, val = ({key: np.asarray(dataset[key], np.float32) for key in DATASET_KEYS} for dataset in datasets)
    for dataset in (train, val):
        dataset["actions"] = np.clip(dataset["actions"], -ACTION_CLIP, ACTION_CLIP)
    logger.info(
        "dataset: %d train transitions (%d episodes), %d validation transitions (%d episodes), goal_dim %d",
        len(train["observations"]),
        counts["train_episodes"],
        len(val["observations"]),
        counts["val_episodes"],
        train["oracle_reps"].shape[-1],
    )
    return env, eval_env, train, val
