"""Checks and derived values for a run's config, applied before any work starts."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

import agents

BY_DOMAIN = "_by_domain"


def path_safe(name: object, limit: int = 120) -> str:
    """`name` as a path component: a list's brackets become parentheses and lose their spaces
    (`seed=[0, 1]` -> `seed=(0,1)`: Orbax cannot read checkpoints under a glob character class), and a name
    too long is cut to its start plus a hash of the whole (deterministic)."""
    name = str(name).replace("[", "(").replace("]", ")").replace(", ", ",")
    if len(name) <= limit:
        return name
    return f"{name[: limit - 17]}-{hashlib.sha1(name.encode()).hexdigest()[:16]}"


OmegaConf.register_new_resolver("path_safe", path_safe, replace=True)


def _require(condition: bool, setting: str, expected: str, value: Any) -> None:
    if not condition:
        raise ValueError(f"invalid setting {setting}={value!r}: expected {expected}")


def validate(cfg: DictConfig) -> None:
    """Fail fast, naming the setting, on values that would only break hours into a run."""
    _require(cfg.agent.chunk_length >= 1, "agent.chunk_length", "an integer >= 1", cfg.agent.chunk_length)
    _require(cfg.batch_size >= 1, "batch_size", "an integer >= 1", cfg.batch_size)
    _require(
        cfg.offline_ratio is None or 0.0 <= cfg.offline_ratio <= 1.0,
        "offline_ratio",
        "null (one pool) or a fraction in [0, 1]",
        cfg.offline_ratio,
    )
    devices = cfg.get("devices", "all")
    _require(
        devices == "all" or isinstance(devices, int) and devices >= 1,
        "devices",
        "all or an integer >= 1",
        devices,
    )
    _require(cfg.eval_episodes >= 1, "eval_episodes", "an integer >= 1", cfg.eval_episodes)
    for key in ("offline_steps", "online_steps", "start_training", "random_action_steps"):
        _require(cfg[key] >= 0, key, "an integer >= 0", cfg[key])
    for key in (
        "utd_ratio",
        "eval_interval",
        "log_interval",
        "save_interval",
        "updates_per_dispatch",
        "buffer_size",
    ):
        _require(cfg[key] >= 1, key, "an integer >= 1", cfg[key])
    if cfg.env.get("goal_conditioned"):  # the goal-conditioned setting (DQC's) is offline only
        _require(cfg.online_steps == 0, "online_steps", "0 for a goal-conditioned env", cfg.online_steps)
        _require(
            cfg.env.get("dataset_size") is None,
            "env.dataset_size",
            "null for a goal-conditioned env (it reads the standard play dataset)",
            cfg.env.get("dataset_size"),
        )
    execution_length = cfg.agent.get("execution_length")
    _require(
        execution_length is None or execution_length >= 1,
        "agent.execution_length",
        "null (the whole chunk) or an integer >= 1",
        execution_length,
    )
    for key in ("execution_lengths", "num_samples"):
        values = list(cfg.eval.get(key, []))
        _require(
            all(isinstance(v, int) and v >= 1 for v in values),
            f"eval.{key}",
            "a list of integers >= 1",
            values,
        )
    _require(
        not cfg.eval.get("num_samples")
        or "num_samples"
        in {f.name for f in dataclasses.fields(agents.agent_module(cfg.agent.algorithm).Config)},
        "eval.num_samples",
        f"[] for agent.algorithm={cfg.agent.algorithm} (no best-of-N sampling)",
        list(cfg.eval.get("num_samples", [])),
    )
    _require(cfg.eval.video_episodes >= 0, "eval.video_episodes", "an integer >= 0", cfg.eval.video_episodes)
    _require(
        cfg.eval.video_episodes == 0 or os.environ.get("MUJOCO_GL") in ("egl", "osmesa"),
        "eval.video_episodes",
        "0 unless MuJoCo can render headless (export MUJOCO_GL=egl or MUJOCO_GL=osmesa)",
        cfg.eval.video_episodes,
    )
    workers = cfg.eval.get("workers")
    _require(
        workers is None or isinstance(workers, int) and workers >= 1,
        "eval.workers",
        "null (the cores this process may use, at most eval_episodes) or an integer >= 1",
        workers,
    )
    if agents.agent_module(cfg.agent.algorithm).Agent.batch_kind == "trajectories":
        # Online DT explores with its own policy from a replay of whole trajectories
        algorithm = f"agent.algorithm={cfg.agent.algorithm}"
        _require(
            cfg.random_action_steps == 0, "random_action_steps", f"0 for {algorithm}", cfg.random_action_steps
        )
        _require(cfg.offline_ratio is None, "offline_ratio", f"null for {algorithm}", cfg.offline_ratio)
    agents.make_config(agent_settings(cfg, domain=None))


def eval_workers(cfg: DictConfig, runs: int = 1) -> int:
    """Env processes each of a vector's `runs` runs spreads its evaluation episodes over: eval.workers, or
    when null the cores this process may use shared among the runs (a vector of 20 runs on 16 cores would
    otherwise start 320 MuJoCo processes), never more than the episodes (an idle worker only costs its start).
    """
    workers = cfg.eval.get("workers")
    if workers is None:
        workers = len(os.sched_getaffinity(0)) // runs
    return max(1, min(workers, cfg.eval_episodes))


def agent_settings(cfg: DictConfig, domain: str | None) -> dict:
    """The agent group as a plain dict, with per-domain defaults filled in.

    A key `X_by_domain: {domain: value, ..., default: value}` sets `X` when `X` is null, so paper defaults
    that differ per environment (alpha, the number of best-of-N samples) apply unless the user sets `X`.
    """
    values = OmegaConf.to_container(cfg.agent, resolve=True)
    for table_key in [key for key in values if key.endswith(BY_DOMAIN)]:
        key, table = table_key[: -len(BY_DOMAIN)], values.pop(table_key)
        if values.get(key) is None:
            values[key] = domain_value(table_key, table, domain)
    return values


def domain_value(table_key: str, table: dict, domain: str | None):
    """The value of a per-domain table for `domain`, else its 'default'; neither names the table's domains."""
    if domain in table:
        return table[domain]
    if "default" in table:
        return table["default"]
    raise ValueError(
        f"agent.{table_key} has no value for domain '{domain}' and no 'default'; it has {sorted(table)}: "
        f"set agent.{table_key[: -len(BY_DOMAIN)]}=<value>"
    )
