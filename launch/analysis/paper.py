"""The paper's published success curves (data/paper/q-chunking-curves.csv), matched to runs, on their x.
Other published sources (the QAM authors' per-seed results, qam_results.py) give curves of the same kind.

A run matches a paper curve through the method name its agent config carries (`agent.paper_label`, set by
configs/agent/*.yaml: qc -> QC, ...) and its env name: an OGBench single-task env
`<domain>-<type>[-100m]-singletask-task<N>-v0` (type play or navigate) is the task `<domain>-<type>-task<N>`;
a robomimic env whose name holds `lift-mh`, `can-mh` or `square-mh` is the paper's `lift`, `can` or `square`.

The paper's x is in millions of steps: [0, 1] offline updates, (1, 2] 1 + environment steps. A run's x is
offline updates, then offline_steps + environment steps. The paper's offline part is mapped linearly onto
[0, offline_steps] and its online part onto (offline_steps, offline_steps + online_steps]; with the paper's
budget (1M + 1M) the mapping is the identity. Online-only methods (RLPD family) have only the online part.
A source with another budget (QAM's 1M + 500K) carries it (`PaperCurve.budget`): its online part is
(1, 1 + online / 1M].
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CURVES_CSV = Path(__file__).resolve().parents[2] / "data" / "paper" / "q-chunking-curves.csv"
OGBENCH_DOMAINS = ("cube-double", "cube-triple", "cube-quadruple", "scene", "puzzle-3x3")
# the other domains of QAM's results (qam_results.py)
QAM_DOMAINS = ("puzzle-4x4", "antmaze-large", "antmaze-giant", "humanoidmaze-medium", "humanoidmaze-large")
PAPER_BUDGET = (1_000_000, 1_000_000)  # offline updates, online environment steps
_OGBENCH_TASK = re.compile(
    rf"({'|'.join(OGBENCH_DOMAINS + QAM_DOMAINS)})-(play|navigate)(?:-100m)?-singletask-task(\d+)-v\d+"
)
_ROBOMIMIC_TASK = re.compile(r"(?:^|[-_/])(lift|can|square)[-_]mh(?:$|[-_/])")


@dataclass(frozen=True)
class PaperCurve:
    """One published curve. step_millions, mean, low, high: (num_points,), steps increasing."""

    benchmark: str
    task: str
    method: str
    step_millions: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    source: str = "Q-chunking"
    budget: tuple[int, int] = PAPER_BUDGET

    def end_of(self, phase: str) -> float:
        """The step (millions, the paper's x) that ends `phase` ('offline' or 'online') in this source."""
        return 1.0 if phase == "offline" else 1.0 + self.budget[1] / 1e6

    def at(self, step_millions: float) -> tuple[float, float, float] | None:
        """(mean, low, high) at a published step, None if the curve has no point there."""
        hits = np.flatnonzero(np.isclose(self.step_millions, step_millions))
        if not len(hits):
            return None
        return float(self.mean[hits[0]]), float(self.low[hits[0]]), float(self.high[hits[0]])


def paper_task(env_name: str) -> tuple[str, str] | None:
    """(benchmark, task) of the paper for an env name, None when the paper has no such task."""
    if match := _OGBENCH_TASK.fullmatch(env_name):
        return "ogbench", f"{match[1]}-{match[2]}-task{match[3]}"
    if match := _ROBOMIMIC_TASK.search(env_name):
        return "robomimic", match[1]
    return None


def load_curves(path: Path = CURVES_CSV) -> dict[tuple[str, str, str], PaperCurve]:
    """Every curve in the CSV, keyed by (benchmark, task, method)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"expected the paper's curves at {path} (data/paper/ of the repository: run from a clone or an "
            "editable install), found no file"
        )
    rows: dict[tuple[str, str, str], list[tuple[float, float, float, float]]] = {}
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            key = (row["benchmark"], row["task"], row["method"])
            rows.setdefault(key, []).append(
                tuple(
                    float(row[column])
                    for column in ("step_millions", "success_mean", "ci95_low", "ci95_high")
                )
            )
    curves = {}
    for key, points in rows.items():
        step, mean, low, high = np.array(sorted(points)).T
        curves[key] = PaperCurve(*key, step, mean, low, high)
    return curves


def match_curve(
    curves: dict[tuple[str, str, str], PaperCurve], paper_label: str | None, env_name: str
) -> PaperCurve | None:
    """The paper's curve of method `paper_label` (a run's agent.paper_label) on `env_name`, None when the
    paper has none."""
    task = paper_task(env_name)
    if paper_label is None or task is None:
        return None
    return curves.get((*task, paper_label))


def aggregate_curve(
    curves: dict[tuple[str, str, str], PaperCurve], members: list[PaperCurve]
) -> PaperCurve | None:
    """The paper's own aggregate when `members` are exactly the 5 OGBench tasks of one domain and method."""
    methods = {curve.method for curve in members}
    datasets = {curve.task.rsplit("-task", 1)[0] for curve in members}
    if len(methods) != 1 or len(datasets) != 1 or {curve.benchmark for curve in members} != {"ogbench"}:
        return None
    (dataset,), (method,) = datasets, methods
    if {curve.task for curve in members} != {f"{dataset}-task{n}" for n in range(1, 6)}:
        return None
    return curves.get(("ogbench-aggregate", task_domain(dataset), method))


def task_domain(task: str) -> str:
    """A published OGBench task's or dataset's domain: 'antmaze-large-navigate-task1' -> 'antmaze-large'."""
    return re.sub(r"-(play|navigate)(-task\d+)?$", "", task)


def to_run_steps(
    step_millions: np.ndarray, offline_steps: int, online_steps: int, budget: tuple[int, int] = PAPER_BUDGET
) -> np.ndarray:
    """The paper's steps on a run's x: [0, 1] -> [0, offline_steps], (1, 1 + budget online / 1M] ->
    offline_steps + (0, online_steps]."""
    step_millions = np.asarray(step_millions, float)
    offline = np.minimum(step_millions, 1.0) * offline_steps
    online = np.maximum(step_millions - 1.0, 0.0) * 1e6 / budget[1] * online_steps
    return offline + online


def covering_aggregate(
    curves: dict[tuple[str, str, str], PaperCurve], members: list[PaperCurve]
) -> tuple[PaperCurve, str] | None:
    """The paper's aggregate curve over the OGBench domains of `members` (one method's task curves) and what
    it averages: the domain's 5 tasks when they all lie in one domain, else all 5 domains. None for robomimic
    or mixed methods (the paper publishes no aggregate there)."""
    methods = {curve.method for curve in members}
    if len(methods) != 1 or {curve.benchmark for curve in members} != {"ogbench"}:
        return None
    domains = sorted({task_domain(curve.task) for curve in members})
    (method,) = methods
    if len(domains) == 1:
        key, covers = domains[0], f"{domains[0]}'s 5 tasks"
    else:
        published = {task for benchmark, task, _ in curves if benchmark == "ogbench-aggregate"} - {"all"}
        key, covers = "all", f"all {len(published)} OGBench domains"
    curve = curves.get(("ogbench-aggregate", key, method))
    return None if curve is None else (curve, covers)
