"""The env config group (configs/env/*.yaml), read and checked once at the boundary.

Accepts an OmegaConf DictConfig or any dict- or attribute-like object, so scripts and tests can pass plain
dicts.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass

# The sharded sets OGBench publishes beside the standard files, and their number of shards.
SHARDED_SIZES = {"100m": 100, "1b": 1000}


def cfg_value(cfg, key: str):
    """`cfg[key]` or `cfg.key`, with an error that names the missing key."""
    try:
        return cfg[key] if isinstance(cfg, Mapping) else getattr(cfg, key)
    except (KeyError, AttributeError):
        found = sorted(cfg) if isinstance(cfg, Mapping) else sorted(vars(cfg))
        raise ValueError(f"env config: expected a key '{key}', found keys {found}") from None


# OGBench >= 1.2's `success_timing` of single-task envs: reward, termination and success computed on the
# current state ('pre', its default) or on the next state ('post', OGBench 1.1.2's and the paper's).
SUCCESS_TIMINGS = ("pre", "post")


def _success_timing(value) -> str | None:
    if value is not None and value not in SUCCESS_TIMINGS:
        expected = f"null or one of {list(SUCCESS_TIMINGS)}"
        raise ValueError(f"env.success_timing: expected {expected}, found {value!r}")
    return value


def _int_at_least(value, key: str, minimum: int, *, optional: bool) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = f"null or an integer >= {minimum}" if optional else f"an integer >= {minimum}"
        raise ValueError(f"env.{key}: expected {expected}, found {value!r}")
    return value


def _workers(value) -> int:
    """`env.generate.workers`, with null meaning the cores this process may run on."""
    if value is None:
        return len(os.sched_getaffinity(0))
    return _int_at_least(value, "generate.workers", 1, optional=False)


def _dataset_size(value) -> str | None:
    if value is not None and str(value) not in SHARDED_SIZES:
        raise ValueError(
            f"env.dataset_size: expected null (the standard file) or one of {list(SHARDED_SIZES)} (a "
            f"sharded set), found {value!r}"
        )
    return None if value is None else str(value)


@dataclass(frozen=True)
class EnvConfig:
    """The keys of configs/env/*.yaml that decide which env is made and where its dataset comes from."""

    name: str
    sparse: bool
    success_timing: str | None  # None keeps the installed OGBench's default
    max_episode_steps: int | None  # time limit of the online and evaluation envs; None keeps OGBench's
    dataset_path: str | None
    dataset_dir: str
    download: bool
    num_episodes: int | None
    generate_max_episode_steps: int | None
    workers: int  # null in the config: every core available to this process
    dataset_size: str | None  # None: the standard file; '100m' or '1b': the sharded set, streamed
    shards_in_memory: int
    shard_interval: int
    num_shards: int | None  # shards to generate; None: the published count

    @classmethod
    def from_cfg(cls, env_cfg) -> "EnvConfig":
        generate = cfg_value(env_cfg, "generate")
        dataset_path = cfg_value(env_cfg, "dataset_path")
        return cls(
            name=str(cfg_value(env_cfg, "name")),
            sparse=bool(cfg_value(env_cfg, "sparse")),
            success_timing=_success_timing(cfg_value(env_cfg, "success_timing")),
            max_episode_steps=_int_at_least(
                cfg_value(env_cfg, "max_episode_steps"), "max_episode_steps", 1, optional=True
            ),
            dataset_path=None if dataset_path is None else str(dataset_path),
            dataset_dir=str(cfg_value(env_cfg, "dataset_dir")),
            download=bool(cfg_value(env_cfg, "download")),
            num_episodes=_int_at_least(
                cfg_value(generate, "num_episodes"), "generate.num_episodes", 1, optional=True
            ),
            # Two steps is the shortest episode that keeps a transition once OGBench drops its last step.
            generate_max_episode_steps=_int_at_least(
                cfg_value(generate, "max_episode_steps"), "generate.max_episode_steps", 2, optional=True
            ),
            workers=_workers(cfg_value(generate, "workers")),
            dataset_size=_dataset_size(cfg_value(env_cfg, "dataset_size")),
            shards_in_memory=_int_at_least(
                cfg_value(env_cfg, "shards_in_memory"), "shards_in_memory", 1, optional=False
            ),
            shard_interval=_int_at_least(
                cfg_value(env_cfg, "shard_interval"), "shard_interval", 1, optional=False
            ),
            num_shards=_int_at_least(
                cfg_value(generate, "num_shards"), "generate.num_shards", 1, optional=True
            ),
        )

    @property
    def official_size(self) -> bool:
        """Whether the dataset is the published size (only then is OGBench's file name used)."""
        return self.num_episodes is None and self.generate_max_episode_steps is None
