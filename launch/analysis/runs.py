"""The runs under a sweep or run dir, and each one's curve of a metric from its metrics.jsonl and config.

Every dir that holds `.hydra/config.yaml` is a run, except a dir that holds runs below it: a vector of runs
(one process training several seeds or tasks) keeps one member dir per run, and the members are the runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import Container, DictConfig, OmegaConf

from launch.reliability.metrics import METRICS_FILE, read_rows

PHASES = ("offline", "online")
_ABSENT = object()


@dataclass(frozen=True)
class RunCurve:
    """One run's metric against x, and where its phases end.

    x, y: (num_points,) increasing x. final: the metric at the end of each phase the run completed.
    offline_end: the x of the offline/online boundary, None if the run never got there.
    """

    value: object
    x: np.ndarray
    y: np.ndarray
    final: dict[str, float]
    offline_steps: int
    offline_end: float | None


def find_runs(dirs: list[Path]) -> list[tuple[Path, Path, Path]]:
    """(root, job dir, run dir) for every run under each root (a sweep dir, or a run dir itself).

    A dir with `.hydra/config.yaml` is a job of a sweep; when more such dirs lie below it (the members of a
    vector of runs) those are its runs and it is not one itself.
    """
    runs = []
    for root in dirs:
        if not root.is_dir():
            raise FileNotFoundError(f"expected a sweep or run dir, found no directory at {root}")
        found = [config.parent.parent for config in sorted(root.rglob(".hydra/config.yaml"))]
        for run in found:
            if any(run in other.parents for other in found):
                continue  # a vector of runs: its members are the runs
            outer = [job for job in found if job == run or job in run.parents]
            runs.append((root, min(outer, key=lambda job: len(job.parts)), run))
    return runs


def expected_runs(sweep_dir: Path) -> int | None:
    """Jobs the multirun in `sweep_dir` launched (from its multirun.yaml); None if uncountable (glob).

    Counted as Hydra's basic sweeper launches them: its config's params (e.g. a preset's), then the
    command line's overrides, a key on the command line replacing the same key of the params.
    """
    path = sweep_dir / "multirun.yaml"
    if not path.exists():
        return None
    hydra_cfg = OmegaConf.load(path).hydra
    params = OmegaConf.select(hydra_cfg, "sweeper.params", default=None)
    params = {} if params is None else OmegaConf.to_container(params)
    overrides = [f"{key}={value}" for key, value in params.items()]
    overrides += OmegaConf.to_container(hydra_cfg.overrides.task)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        by_key = {override.key_or_group: override for override in parsed}  # the last of a key wins
        return math.prod(
            len(list(override.sweep_string_iterator()))
            for override in by_key.values()
            if override.is_sweep_override()
        )
    except HydraException:
        return None


def curve_from_rows(
    value: object, rows: list[dict], metric: str, x_key: str, offline_steps: int, online_steps: int
) -> tuple[RunCurve, str | None]:
    """A run's curve from its metric rows, and what is wrong with the run (None if it is complete).

    x_key: "step" (offline update steps, then offline_steps + environment steps) or "time" (seconds).
    """
    points = {}
    for row in rows:
        if row.get(metric) is not None:
            points[row[x_key]] = row[metric]  # a repeated x keeps its last value
    x = np.array(sorted(points), dtype=float)
    y = np.array([points[key] for key in sorted(points)], dtype=float)
    last_step = {
        phase: max((row["step"] for row in rows if row["phase"] == phase), default=None) for phase in PHASES
    }
    ends = {"offline": offline_steps, "online": offline_steps + online_steps}
    final, offline_end = {}, None
    for phase in PHASES:
        if last_step[phase] is None or last_step[phase] < ends[phase]:
            continue
        phase_rows = [row for row in rows if row["phase"] == phase]
        values = [row[metric] for row in phase_rows if row.get(metric) is not None]
        if values:
            final[phase] = float(values[-1])
        if phase == "offline":
            offline_end = float(phase_rows[-1][x_key])
    if offline_steps == 0:
        offline_end = 0.0
    end = ends["online"] if online_steps else ends["offline"]
    reached = max((step for step in last_step.values() if step is not None), default=None)
    problem = None
    if reached is None:
        problem = f"incomplete: {METRICS_FILE} is empty"
    elif reached < end:
        problem = f"incomplete: last logged step {reached}, expected {end}"
    elif not len(x):
        problem = f"no {metric} in {METRICS_FILE}"
    return RunCurve(value, x, y, final, offline_steps, offline_end), problem


def swept_value(config: DictConfig, by: str, run_dir: Path) -> object:
    """The run's value of the key `by` (a list or dict value as its text, so that it can name a curve)."""
    value = OmegaConf.select(config, by, default=_ABSENT)
    if value is _ABSENT:
        raise ValueError(f"--by {by}: expected that key in every run's config, not found in {run_dir}")
    return str(OmegaConf.to_container(value)) if isinstance(value, Container) else value


def load_run(
    run_dir: Path, config: DictConfig, by: str, metric: str, x_key: str
) -> tuple[RunCurve | None, str | None]:
    """A run's curve (None if it logged nothing) and its problem (None if complete)."""
    value = swept_value(config, by, run_dir)
    metrics = run_dir / METRICS_FILE
    if not metrics.exists():
        return None, f"missing: no {METRICS_FILE} (the run crashed before logging, or is still starting)"
    rows, torn = read_rows(metrics)
    # Online-only agents (RLPD family) skip the offline phase whatever offline_steps says.
    offline_steps = config.offline_steps if config.agent.get("offline_pretraining", True) else 0
    curve, problem = curve_from_rows(value, rows, metric, x_key, offline_steps, config.online_steps)
    if torn:
        problem = f"{problem}; " if problem else ""
        problem += f"1 unreadable line(s) in {METRICS_FILE}"
    return curve, problem
