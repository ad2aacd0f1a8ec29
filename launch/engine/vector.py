"""A vector of runs: every combination of a config's lists is one run (a member), trained in one process.

`seed`, `env.task`, the agent's sweepable hyperparameters (`agent.alpha`, `agent.lr`, ...: the fields its
Config marks sweepable), `utd_ratio` and `offline_ratio` may be lists. A config without lists is a vector of
one, through the same code.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from pathlib import Path

import jax
import jax.numpy as jnp
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

import agents


@dataclasses.dataclass(frozen=True)
class Member:
    """One run of a vector: its own config (a scalar on every axis), its own directory and its value on
    each axis of the vector."""

    cfg: DictConfig
    run_dir: Path
    axes: tuple = ()

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    @property
    def task(self):
        return self.cfg.env.get("task")

    @property
    def env_cfg(self) -> dict:
        return OmegaConf.to_container(self.cfg.env, resolve=True)


def as_list(value) -> list:
    return list(value) if isinstance(value, ListConfig | list | tuple) else [value]


# Top-level settings that may be vector axes: the host loop counts utd_ratio per run, and each run's
# offline_ratio is a leaf of its replay (buffers/replay.py).
RUN_AXES = ("utd_ratio", "offline_ratio")


@dataclasses.dataclass(frozen=True)
class Axis:
    """One list of a vector's config: its dotted key (`agent.alpha`) and values."""

    key: str
    values: tuple

    @property
    def name(self) -> str:
        """The axis in a member's directory name and W&B tags: the key's last part (`alpha`, `task`)."""
        return self.key.rsplit(".", 1)[-1]


def _refuse_shape_list(key: str, values) -> None:
    raise ValueError(
        f"{key}={values} is a list, but {key} changes array shapes, so its values cannot share one vector; "
        f"run one vector per value with -m (a multirun of vectors): -m {key}=A,B"
    )


def vector_axes(cfg: DictConfig) -> list[Axis]:
    """The lists of `cfg` that make a vector, outermost first: the agent's sweepable settings (in the agent
    group's order), `utd_ratio`, `offline_ratio`, `env.task`, `seed`. A list for any other scalar setting
    (or a list of lists for a tuple one, such as agent.hidden_dims) fails in one line pointing to -m."""
    config_cls = agents.agent_module(cfg.agent.algorithm).Config
    fields = {field.name: field for field in dataclasses.fields(config_cls)}
    axes = []
    for key, value in cfg.agent.items():
        if not isinstance(value, ListConfig):
            continue
        if key in config_cls.sweepable():
            axes.append(Axis(f"agent.{key}", tuple(value)))
        elif (
            key not in fields
            or not isinstance(fields[key].default, tuple)
            or any(isinstance(item, ListConfig) for item in value)
        ):
            _refuse_shape_list(f"agent.{key}", list(value))
    for key, value in cfg.items():
        if isinstance(value, ListConfig) and key != "seed":
            if key not in RUN_AXES:
                _refuse_shape_list(key, list(value))
            axes.append(Axis(key, tuple(value)))
    for key in ("env.task", "seed"):
        value = OmegaConf.select(cfg, key)
        if isinstance(value, ListConfig):
            axes.append(Axis(key, tuple(value)))
    for axis in axes:
        integers = axis.key in ("seed", "env.task")
        expected = "distinct integers" if integers else "distinct numbers"
        valid = (int,) if integers else (int, float)
        values = axis.values
        if len(set(values)) != len(values) or not all(
            isinstance(v, valid) and not isinstance(v, bool) or (integers and v is None) for v in values
        ):
            raise ValueError(f"invalid setting {axis.key}={list(values)}: expected {expected}")
    return axes


def is_vector(cfg: DictConfig) -> bool:
    """Whether any setting is a list (a vector of runs, even of one)."""
    return bool(vector_axes(cfg))


def vector_members(cfg: DictConfig, run_dir: Path) -> list[Member]:
    """The runs of `cfg`: one per combination of its lists (the last axis, `seed`, varying fastest), each in
    a directory naming its value on every axis, `alpha=100,task=2,seed=0/`; a config without lists is one
    run in `run_dir` itself."""
    axes = vector_axes(cfg)
    if not axes:
        return [Member(cfg, run_dir)]
    members = []
    for values in itertools.product(*(axis.values for axis in axes)):
        member_cfg = copy.deepcopy(cfg)
        with open_dict(member_cfg):
            for axis, value in zip(axes, values, strict=True):
                if value is not None:
                    OmegaConf.update(member_cfg, axis.key, value)
        name = ",".join(f"{axis.name}={value}" for axis, value in zip(axes, values, strict=True))
        members.append(Member(member_cfg, run_dir / name, tuple(zip(axes, values, strict=True))))
    return members


def run_tags(member: Member) -> list[str]:
    """W&B tags that dashboards group by, with the member's value on each swept hyperparameter."""
    cfg = member.cfg
    swept = [f"{axis.name}={value}" for axis, value in member.axes if axis.key not in ("seed", "env.task")]
    return [
        cfg.agent.name,
        cfg.env.name,
        f"chunk_length={cfg.agent.chunk_length}",
        f"task={cfg.env.get('task')}",
        f"seed={cfg.seed}",
        *swept,
    ]


def stack(trees: list):
    """Pytrees of one structure stacked on a new leading run axis. The static parts (e.g. an agent's
    optimiser functions) are the first tree's: equal in behaviour, if not in identity, across the runs."""
    treedef = jax.tree_util.tree_structure(trees[0])
    leaves = [jax.tree_util.tree_leaves(tree) for tree in trees]
    return jax.tree_util.tree_unflatten(treedef, [jnp.stack(column) for column in zip(*leaves, strict=True)])
