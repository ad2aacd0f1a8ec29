"""OGBench's single-task and goal-conditioned envs and their offline datasets (downloaded, or generated with
OGBench's oracles), and robomimic's lift, can and square with their human demonstrations (envs/robomimic.py).
envs/make.py sends each env name to the module that makes it."""

from envs import headless  # noqa: F401  (first: picks MuJoCo's GL backend before OGBench imports it)

# isort: split
from envs import goal_conditioned, provenance, shards
from envs.datasets import ResolvedDataset, locate_dataset, validate_dataset
from envs.errors import DatasetError
from envs.generate import generate_dataset
from envs.make import (
    describe_dataset,
    domain_of,
    load_tasks,
    make_env,
    make_env_and_datasets,
    make_offline_env,
    resolve_dataset,
)
from envs.observations import observation_array, observation_dtype
from envs.suite import dataset_file_name, sparse_rewards
from envs.vector import check_renderer, make_vector_env, reset_runs

__all__ = [
    "DatasetError",
    "ResolvedDataset",
    "check_renderer",
    "dataset_file_name",
    "describe_dataset",
    "goal_conditioned",
    "shards",
    "domain_of",
    "generate_dataset",
    "load_tasks",
    "locate_dataset",
    "make_env",
    "make_env_and_datasets",
    "make_offline_env",
    "make_vector_env",
    "observation_array",
    "observation_dtype",
    "provenance",
    "reset_runs",
    "resolve_dataset",
    "sparse_rewards",
    "validate_dataset",
]
