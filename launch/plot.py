"""Success curves and final-success table of one or more sweeps, from the runs' local metrics.jsonl.

    python launch/plot.py sweeps/2025-06-01_12-00-00 [more sweep or run dirs] --by agent.chunk_length
    python launch/plot.py sweeps/cube-double --by agent.name --paper   # beside the paper's curves
    python launch/plot.py sweeps/cube-double --by agent.name --aggregate   # rliable's IQM, P(X > Y), ...

Every dir under the given ones that holds `.hydra/config.yaml` is a run, except a dir that holds runs below
it: a vector of runs (one process training several seeds or tasks) keeps one member dir per run, and the
members are the runs. A run's value of `--by` in its config picks its curve.

Writes OUT.png and OUT.pdf (mean over runs with a 95% bootstrap band, the offline/online
boundary dashed) and OUT.md (the metric at the end of each phase), and prints the table. No W&B needed.

Alignment: each run's curve is linearly interpolated onto the union of the x values of its group, inside
the run's own range only (never extrapolated). Runs evaluated at slightly different steps (online
evaluations wait for the chunk in flight) are thus averaged at common x; a run that stopped early simply
drops out after its last point, and the band there is over fewer runs. The end-of-phase table uses only
runs that reached the end of that phase; the others are listed as missing or incomplete.

--paper adds the authors' published curve (launch/paper.py) for each agent and task of the runs that the
paper has (the method named by the run's agent.paper_label): dashed, with its 95% band, labelled
"paper: <method>" (the paper's own 5-task mean when the runs cover a whole OGBench domain, one curve per
task for other mixes), and the table gains its value at the end of each phase. Runs the paper has no curve
for plot as without it.

--aggregate writes instead rliable's aggregates over runs x tasks (launch/aggregate.py; a run's task is its
env.name): OUT.md with IQM, mean, median and optimality gap of the final metric per phase, probability of
improvement and performance profiles, with 95% stratified bootstrap CIs, and the figures OUT (aggregates),
OUT_curves (IQM and mean over steps), OUT_improvement and OUT_profile (.png and .pdf). With --paper the
paper's aggregate (its ogbench-aggregate curves) stands beside each method it has.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from matplotlib.figure import Figure
from omegaconf import Container, DictConfig, OmegaConf

from launch import aggregate, paper
from launch.logger import METRICS_FILE

REPO = Path(__file__).resolve().parents[1]
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


@dataclass(frozen=True)
class Summary:
    """Mean and percentile-bootstrap band over runs at each x; n: runs present there. All (num_points,)."""

    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray


@dataclass(frozen=True)
class Overlay:
    """A paper curve as drawn: its label, the runs' group values it stands beside, and x on the runs' axis."""

    label: str
    curve: paper.PaperCurve
    values: frozenset
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


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
    command line's overrides.
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
        return math.prod(
            len(list(override.sweep_string_iterator()))
            for override in OverridesParser.create().parse_overrides(overrides)
            if override.is_sweep_override()
        )
    except HydraException:
        return None


def read_rows(path: Path) -> tuple[list[dict], int]:
    """The rows of a metrics.jsonl and the number of unreadable lines (a crash mid-write leaves one)."""
    rows, bad = [], 0
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1
    return rows, bad


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
    rows, bad = read_rows(metrics)
    # Online-only agents (RLPD family) skip the offline phase whatever offline_steps says.
    offline_steps = config.offline_steps if config.agent.get("offline_pretraining", True) else 0
    curve, problem = curve_from_rows(value, rows, metric, x_key, offline_steps, config.online_steps)
    if bad:
        problem = f"{problem}; " if problem else ""
        problem += f"{bad} unreadable line(s) in {METRICS_FILE}"
    return curve, problem


def align(curves: list[RunCurve]) -> tuple[np.ndarray, np.ndarray]:
    """Curves on the union of their x: grid (num_points,), values (num_runs, num_points), NaN off a run."""
    grid = np.unique(np.concatenate([curve.x for curve in curves]))
    values = np.full((len(curves), len(grid)), np.nan)
    for row, curve in zip(values, curves, strict=True):
        inside = (grid >= curve.x[0]) & (grid <= curve.x[-1])
        row[inside] = np.interp(grid[inside], curve.x, curve.y)
    return grid, values


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, resamples: int = 2000) -> tuple[float, float]:
    """Percentile-bootstrap 95% interval of the mean of values (n,) with rliable (runs resampled with
    replacement), seeded from rng."""
    _, low, high = aggregate.interval(values[:, None], lambda scores: scores.mean(axis=0), rng, resamples)
    return float(low[0]), float(high[0])


def summarize(
    grid: np.ndarray, values: np.ndarray, rng: np.random.Generator, resamples: int = 2000
) -> Summary:
    """Mean and bootstrap band of values (num_runs, num_points) per column, over the runs present there.

    Columns with the same runs present are one rliable bootstrap (it resamples each column on its own).
    """
    mean, low, high = (np.full(len(grid), np.nan) for _ in range(3))
    present = ~np.isnan(values)
    for pattern in np.unique(present.T, axis=0):
        columns = (pattern == present.T).all(axis=1)
        if pattern.any():
            scores = values[pattern][:, columns]
            mean[columns] = scores.mean(axis=0)
            _, low[columns], high[columns] = aggregate.interval(
                scores, lambda scores: scores.mean(axis=0), rng, resamples
            )
    return Summary(grid, mean, low, high, present.sum(axis=0))


def sort_values(values: set) -> list:
    """Numbers in numeric order, anything else by its text."""
    if all(isinstance(value, int | float) and not isinstance(value, bool) for value in values):
        return sorted(values)
    return sorted(values, key=str)


def group(curves: list[RunCurve]) -> dict[object, list[RunCurve]]:
    """Curves with at least one point, by value of the swept key, values in order."""
    groups = {value: [] for value in sort_values({curve.value for curve in curves})}
    for curve in curves:
        if len(curve.x):
            groups[curve.value].append(curve)
    return {value: members for value, members in groups.items() if members}


def paper_cell(overlays: list[Overlay], phase: str) -> str:
    """The paper's mean [95% CI] at the end of `phase` (1M or 2M steps) for each overlay of one group."""
    cells = []
    for overlay in overlays:
        online_only = overlay.curve.step_millions[0] >= 1.0  # no offline phase to end
        point = None if phase == "offline" and online_only else overlay.curve.at(PHASES.index(phase) + 1.0)
        text = "n/a" if point is None else "{:.3f} [{:.3f}, {:.3f}]".format(*point)
        cells.append(f"{overlay.label.removeprefix('paper: ')}: {text}" if len(overlays) > 1 else text)
    return "; ".join(cells) or "n/a"


def final_table(
    groups: dict[object, list[RunCurve]],
    by: str,
    metric: str,
    rng: np.random.Generator,
    resamples: int = 2000,
    overlays: list[Overlay] | None = None,
) -> str:
    """Markdown: per value, runs and the metric at the end of offline and online (mean [95% CI], n); with
    overlays, the paper's value at the end of each phase beside it."""
    header = [by, "runs plotted"]
    for phase in PHASES:
        header.append(f"{metric} end of {phase}: mean [95% CI] (n)")
        if overlays is not None:
            header.append(f"paper end of {phase}: mean [95% CI]")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for value, members in groups.items():
        cells = [str(value), str(len(members))]
        for phase in PHASES:
            finals = np.array([curve.final[phase] for curve in members if phase in curve.final])
            if len(finals):
                low, high = bootstrap_ci(finals, rng, resamples)
                cells.append(f"{finals.mean():.3f} [{low:.3f}, {high:.3f}] ({len(finals)})")
            else:
                cells.append("n/a (0)")
            if overlays is not None:
                cells.append(paper_cell([overlay for overlay in overlays if value in overlay.values], phase))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(
    summaries: dict[object, Summary],
    counts: dict[object, int],
    boundaries: dict[object, list[float]],
    by: str,
    metric: str,
    x_key: str,
    title: str,
    overlays: tuple[Overlay, ...] = (),
    mapped: bool = False,
) -> Figure:
    """Mean curve and band per value; dashed lines at the offline/online boundaries, in the curve's colour
    where values differ in where the boundary lies (wall-clock time), else grey. Overlays (the paper's
    curves) are dashed with a hatched band; `mapped`: their steps were mapped onto another budget."""
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    axes = figure.add_subplot()
    short = by.rsplit(".", 1)[-1]
    shared = len({tuple(lines) for lines in boundaries.values()}) == 1
    drawn, colors = [], {}
    for value, summary in summaries.items():
        (line,) = axes.plot(summary.x, summary.mean, label=f"{short}={value} ({counts[value]} runs)")
        colors[value] = line.get_color()
        axes.fill_between(
            summary.x, summary.low, summary.high, color=line.get_color(), alpha=0.2, linewidth=0
        )
        if not shared:
            drawn += [(boundary, line.get_color()) for boundary in boundaries[value]]
    if shared:
        drawn = [(boundary, "gray") for boundary in next(iter(boundaries.values()))]
    for overlay in overlays:
        # In the colour of the runs it stands beside, when it alone stands beside them.
        (value,) = overlay.values if len(overlay.values) == 1 else (None,)
        alone = value in colors and sum(value in other.values for other in overlays) == 1
        style = {"color": colors[value]} if alone else {}
        (line,) = axes.plot(overlay.x, overlay.mean, linestyle="--", label=overlay.label, **style)
        axes.fill_between(
            overlay.x, overlay.low, overlay.high, color=line.get_color(), alpha=0.12, linewidth=0, hatch="//"
        )
    for index, (boundary, color) in enumerate(drawn):
        label = "offline | online" if shared else "offline | online (each curve's)"
        axes.axvline(boundary, color=color, linestyle="--", linewidth=1, label=label if index == 0 else None)
    xlabel = (
        "wall-clock seconds"
        if x_key == "time"
        else "steps (offline: updates, online: offline_steps + env steps)"
    )
    if mapped:
        xlabel += "\npaper: its 1M offline + 1M online steps mapped onto this budget"
    axes.set_xlabel(xlabel)
    axes.set_ylabel(metric)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def boundaries_of(curves: list[RunCurve], x_key: str) -> list[float]:
    """The x of each distinct offline/online boundary of these runs: offline_steps, or the mean time at
    which they reached it."""
    if x_key == "step":
        return sorted({float(curve.offline_steps) for curve in curves if curve.offline_steps > 0})
    times = [curve.offline_end for curve in curves if curve.offline_end and curve.offline_steps > 0]
    return [float(np.mean(times))] if times else []


def overlay_of(
    label: str, curve: paper.PaperCurve, members: set, offline_steps: int, online_steps: int
) -> Overlay:
    """A paper curve on the x of runs with this budget."""
    keep = curve.step_millions >= (1.0 if offline_steps == 0 else 0.0)  # no offline phase to map onto
    x = paper.to_run_steps(curve.step_millions[keep], offline_steps, online_steps)
    return Overlay(label, curve, frozenset(members), x, curve.mean[keep], curve.low[keep], curve.high[keep])


def paper_overlays(
    runs: list[tuple[RunCurve, DictConfig]], curves: dict[tuple[str, str, str], paper.PaperCurve]
) -> tuple[list[Overlay], list[str]]:
    """The paper's curves beside these runs, on the runs' x, and notes for the report.

    One curve per method and task the runs have; the paper's 5-task mean where a method's runs cover a whole
    OGBench domain. Steps are mapped onto the budget most of the method's runs have.
    """
    tasks: dict[str, dict[str, paper.PaperCurve]] = {}
    values: dict[tuple[str, str], set] = {}
    budgets: dict[str, Counter] = {}
    notes, timings = set(), set()
    for run, config in runs:
        curve = paper.match_curve(curves, config.agent.get("paper_label"), config.env.name)
        if curve is None:
            notes.add(f"no paper curve for {config.agent.name} on {config.env.name}")
            continue
        tasks.setdefault(curve.method, {})[curve.task] = curve
        values.setdefault((curve.method, curve.task), set()).add(run.value)
        budgets.setdefault(curve.method, Counter())[(run.offline_steps, config.online_steps)] += 1
        if curve.benchmark == "ogbench":
            timings.add(config.env.get("success_timing"))
    overlays = []
    for method, matched in tasks.items():
        (offline_steps, online_steps), _ = budgets[method].most_common(1)[0]
        if len(budgets[method]) > 1:
            notes.add(
                f"{method}: runs with different budgets; the paper's steps are mapped onto "
                f"{offline_steps} offline + {online_steps} online"
            )
        aggregate = paper.aggregate_curve(curves, list(matched.values())) if len(matched) > 1 else None
        every_value = set().union(*(values[(method, task)] for task in matched))
        if len(matched) == 1:
            chosen = [(f"paper: {method}", *matched.values(), every_value)]
        elif aggregate is not None:
            chosen = [(f"paper: {method} (mean of {aggregate.task}'s 5 tasks)", aggregate, every_value)]
        else:
            chosen = [
                (f"paper: {method} {task}", curve, values[(method, task)]) for task, curve in matched.items()
            ]
        for label, curve, members in chosen:
            overlays.append(overlay_of(label, curve, members, offline_steps, online_steps))
            online_only = curve.step_millions[0] >= 1.0
            if online_steps != paper.PAPER_BUDGET[1] or (
                offline_steps != paper.PAPER_BUDGET[0] and not online_only
            ):
                notes.add(
                    f"{label}: the paper's 1M offline steps are mapped onto [0, {offline_steps}] and "
                    f"its 1M online steps onto ({offline_steps}, {offline_steps + online_steps}]"
                )
    notes |= setup_notes([curve for matched in tasks.values() for curve in matched.values()], timings)
    return overlays, sorted(notes)


def setup_notes(matched: list[paper.PaperCurve], timings: set) -> set[str]:
    """How the setup of runs beside these paper curves differs from the paper's; timings: the runs'
    env.success_timing on OGBench."""
    notes = set()
    if any(curve.task.startswith("cube-quadruple") for curve in matched):
        notes.add("the paper's cube-quadruple curves were trained on the 100M-transition dataset")
    if timings - {"post"}:
        used = ", ".join(sorted("null" if timing is None else timing for timing in timings))
        notes.add(
            "the paper ran OGBench 1.1.2, whose single-task envs judge success after each step "
            f"(env.success_timing=post); these runs used {used}"
        )
    return notes


def by_method_and_task(loaded: list[tuple[RunCurve, DictConfig]]) -> dict[object, dict[str, list]]:
    """The runs with a curve by value of the swept key (values in order), then by task (env name)."""
    found: dict[object, dict[str, list]] = {}
    for curve, config in loaded:
        if len(curve.x):
            found.setdefault(curve.value, {}).setdefault(config.env.name, []).append((curve, config))
    return {value: dict(sorted(found[value].items())) for value in sort_values(set(found))}


def rectangle(value: object, columns: dict[str, list], what: str, notes: list[str]) -> list[list]:
    """rliable's scores are (num_runs, num_tasks): the first n entries of each task's column, n the fewest
    any task has (noted when that leaves some out)."""
    counts = {task: len(column) for task, column in columns.items()}
    fewest = min(counts.values())
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{task}: {count}" for task, count in counts.items())
        notes.append(f"{value}: {what} per task differ ({listed}); the first {fewest} of each are used")
    return [column[:fewest] for column in columns.values()]


def paper_aggregates(methods: dict[object, dict[str, list]], notes: list[str]) -> dict[object, Overlay]:
    """The paper's aggregate curve beside each method whose runs the paper has, on the runs' x."""
    curves, overlays, timings, matched = paper.load_curves(), {}, set(), []
    for value, by_task in methods.items():
        runs = [run for column in by_task.values() for run in column]
        members = [
            paper.match_curve(curves, column[0][1].agent.get("paper_label"), task)
            for task, column in by_task.items()
        ]
        if None in members:
            notes.append(f"{value}: no paper curve for some of its tasks, so no paper aggregate")
            continue
        found = paper.covering_aggregate(curves, members)
        if found is None:
            notes.append(f"{value}: the paper publishes no aggregate for {members[0].benchmark}")
            continue
        curve, covers = found
        (offline_steps, online_steps), _ = Counter(
            (run.offline_steps, config.online_steps) for run, config in runs
        ).most_common(1)[0]
        label = f"paper: {curve.method} (mean of {covers})"
        overlays[value] = overlay_of(label, curve, {value}, offline_steps, online_steps)
        notes.append(
            f"{label}: beside {value}'s {len(by_task)} task(s); the paper's steps mapped onto "
            f"{offline_steps} offline + {online_steps} online"
        )
        matched += members
        timings |= {config.env.get("success_timing") for _, config in runs}
    notes += sorted(setup_notes(matched, timings))
    return overlays


def final_scores(
    methods: dict[object, dict[str, list]], notes: list[str]
) -> dict[str, dict[object, np.ndarray]]:
    """Per phase and method, the final metric of the runs that ended the phase: (num_runs, num_tasks); a
    method without such a run on one of its tasks has none for that phase."""
    scores: dict[str, dict[object, np.ndarray]] = {phase: {} for phase in PHASES}
    for phase, value in ((phase, value) for phase in PHASES for value in methods):
        columns = {
            task: [run.final[phase] for run, _ in column if phase in run.final]
            for task, column in methods[value].items()
        }
        if all(columns.values()):
            scores[phase][value] = np.array(rectangle(value, columns, f"runs that ended {phase}", notes)).T
    return {phase: by_value for phase, by_value in scores.items() if by_value}


def aggregate_curves(
    methods: dict[object, dict[str, list]], rng: np.random.Generator, resamples: int
) -> dict:
    """Per method: the steps every run has a value at, and the IQM and mean curves there with their bands."""
    curves = {}
    for value, by_task in methods.items():
        columns = {task: [run for run, _ in column] for task, column in by_task.items()}
        runs = np.array(rectangle(value, columns, "runs", []))
        grid, values = align(list(runs.ravel()))
        values = values.reshape(*runs.shape, -1).transpose(1, 0, 2)  # (num_runs, num_tasks, num_points)
        common = ~np.isnan(values).any(axis=(0, 1))
        if common.any():
            curves[value] = (grid[common], aggregate.curves(values[..., common], rng, resamples))
    return curves


def improvements(
    methods: dict[object, dict[str, list]],
    scores: dict[object, np.ndarray],
    rng: np.random.Generator,
    resamples: int,
    notes: list[str],
) -> tuple[dict[tuple, tuple], dict[tuple, int]]:
    """P(X > Y) [95% CI] for each ordered pair of methods with scores, over the tasks both have, and how
    many tasks those are."""
    pairs, shared = {}, {}
    for x, y in ((x, y) for x in scores for y in scores if x != y):
        common = [task for task in methods[x] if task in methods[y]]
        if not common:
            notes.append(f"{x} and {y} share no task: no probability of improvement")
            continue
        columns = [[list(methods[value]).index(task) for task in common] for value in (x, y)]
        pairs[(x, y)] = aggregate.improvement(
            scores[x][:, columns[0]], scores[y][:, columns[1]], rng, resamples
        )
        shared[(x, y)] = len(common)
    return pairs, shared


def aggregate_report(
    loaded: list[tuple[RunCurve, DictConfig]],
    by: str,
    metric: str,
    rng: np.random.Generator,
    resamples: int,
    with_paper: bool,
) -> tuple[list[str], dict[str, Figure]]:
    """The rliable aggregates of the runs' final metric per phase over runs x tasks, IQM and mean curves,
    probability of improvement and performance profiles: Markdown lines and figures by file suffix."""
    methods, notes = by_method_and_task(loaded), []
    scores = final_scores(methods, notes)
    if not scores:
        raise ValueError(
            f"--aggregate: no method has a run that ended a phase on each of its tasks ({metric})"
        )
    overlays = paper_aggregates(methods, notes) if with_paper else {}
    results = {
        phase: {value: aggregate.aggregates(values, rng, resamples) for value, values in by_value.items()}
        for phase, by_value in scores.items()
    }
    lines = [
        f"Final {metric} over runs x tasks: rliable's aggregates with 95% stratified bootstrap CIs "
        f"({resamples} resamples)."
    ]
    for phase, by_value in results.items():
        paper_cells = {value: paper_cell([overlays[value]], phase) for value in by_value if value in overlays}
        shapes = {value: scores[phase][value].shape for value in by_value}
        lines += ["", f"### End of {phase}", "", aggregate.aggregate_table(by, by_value, shapes, paper_cells)]
    last = list(scores)[-1]
    pairs, shared = improvements(methods, scores[last], rng, resamples, notes)
    if pairs:
        table = aggregate.improvement_table(by, pairs, shared)
        lines += ["", f"### Probability of improvement (end of {last})", "", table]
    profiles = {
        phase: {value: aggregate.profile(values, rng, resamples) for value, values in by_value.items()}
        for phase, by_value in scores.items()
    }
    for phase, by_value in profiles.items():
        lines += ["", f"### Performance profile (end of {phase})", "", aggregate.profile_table(by, by_value)]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]

    colors = aggregate.colors_of(list(methods))
    title = f"{metric} over {len({task for by_task in methods.values() for task in by_task})} task(s)"
    boundaries = sorted({float(run.offline_steps) for run, _ in loaded if run.offline_steps > 0})
    curves = aggregate_curves(methods, rng, resamples)
    figures = {
        "": aggregate.aggregate_figure(by, results, colors, title),
        "_curves": aggregate.curves_figure(by, curves, colors, boundaries, list(overlays.values()), title),
        "_profile": aggregate.profile_figure(by, profiles, colors),
    }
    if pairs:
        figures["_improvement"] = aggregate.improvement_figure(by, pairs, colors, last)
    return lines, figures


def generated_data_warning(configs: list[DictConfig]) -> str | None:
    """A warning when runs compared with the paper trained on locally generated data (their config's
    `dataset.source`, launch/run.py), which is not the data the paper's curves were trained on."""
    generated = [config for config in configs if OmegaConf.select(config, "dataset.source") == "generated"]
    if not generated:
        return None
    return (
        f"{len(generated)} of {len(configs)} runs trained on locally generated data, not the published "
        "dataset the paper used"
    )


def output_stem(args: argparse.Namespace, kind: str) -> Path:
    """Where the outputs go, without suffix: `--out fig.png` writes fig.png, fig.pdf and fig.md rather
    than fig.png.png."""
    out = args.out or args.dirs[0] / f"{args.metric.replace('/', '_')}_{kind}_{args.by}"
    if out.suffix in (".png", ".pdf", ".md"):
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("dirs", nargs="+", type=Path, metavar="SWEEP_DIR", help="sweep dirs or run dirs")
    parser.add_argument("--by", default="agent.chunk_length", help="config key, one curve per value")
    parser.add_argument("--x", default="step", choices=["step", "time"], help="logged step, or seconds")
    parser.add_argument("--metric", default="eval/success")
    parser.add_argument("--out", type=Path, help="path, suffix dropped (default: FIRST_DIR/<metric>_by_<by>)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed, for a reproducible band")
    parser.add_argument(
        "--paper",
        action="store_true",
        help="draw the paper's curves for the runs' agents and tasks (--x step only)",
    )
    parser.add_argument(
        "--aggregate",
        action="store_true",
        help="rliable aggregates over runs x tasks (IQM, mean, median, optimality gap, IQM curves, "
        "probability of improvement, performance profile) instead of one curve per value (--x step only)",
    )
    args = parser.parse_args(argv)
    if args.paper and args.x != "step":
        raise ValueError(f"--paper: expected --x step (the paper's x is steps), found --x {args.x}")
    if args.aggregate and args.x != "step":
        raise ValueError(f"--aggregate: expected --x step (curves over steps), found --x {args.x}")

    dirs = ", ".join(map(str, args.dirs))
    runs = find_runs(args.dirs)
    if not runs:
        raise FileNotFoundError(f"no run (a dir with .hydra/config.yaml) under {dirs}")
    configs = {run_dir: OmegaConf.load(run_dir / ".hydra" / "config.yaml") for _, _, run_dir in runs}
    curves, loaded, problems = [], [], []
    for root, _, run_dir in runs:
        name = str(run_dir.relative_to(root.parent))
        curve, problem = load_run(run_dir, configs[run_dir], args.by, args.metric, args.x)
        if curve is not None:
            curves.append(curve)
            loaded.append((curve, configs[run_dir]))
        if problem:
            problems.append(f"{name}: {problem}")
    for root in args.dirs:
        expected, found = expected_runs(root), len({job for run_root, job, _ in runs if run_root == root})
        if expected is not None and found < expected:
            problems.append(f"{root}: {expected} jobs launched, {found} run dirs (the rest never started)")

    groups = group(curves)
    if not groups:
        raise ValueError(f"no run under {dirs} logged {args.metric}; " + "; ".join(problems))
    rng = np.random.default_rng(args.seed)
    if args.aggregate:
        return write_aggregate(args, loaded, rng, problems)
    summaries = {value: summarize(*align(members), rng, args.resamples) for value, members in groups.items()}
    overlays, notes = paper_overlays(loaded, paper.load_curves()) if args.paper else (None, [])
    data_warning = generated_data_warning([config for _, config in loaded]) if args.paper else None
    table = final_table(groups, args.by, args.metric, rng, args.resamples, overlays)
    title = " | ".join(sorted({f"{config.agent.name} on {config.env.name}" for config in configs.values()}))
    figure = plot(
        summaries,
        {value: len(members) for value, members in groups.items()},
        {value: boundaries_of(members, args.x) for value, members in groups.items()},
        args.by,
        args.metric,
        args.x,
        title,
        tuple(overlays or ()),
        any("mapped onto [0" in note for note in notes),
    )

    if data_warning:
        figure.suptitle(f"warning: {data_warning}", color="tab:red", fontsize=8)
    out = output_stem(args, "by")
    paths = {suffix: out.parent / f"{out.name}.{suffix}" for suffix in ("png", "pdf", "md")}
    figure.savefig(paths["png"], dpi=150)
    figure.savefig(paths["pdf"])
    report = [f"## {title}", "", table]
    if args.paper:
        source = paper.CURVES_CSV.relative_to(REPO)
        report += [
            "",
            f"Paper: the authors' published curves ({source}), mean and 95% CI over their seeds.",
            *([f"- **warning: {data_warning}**"] if data_warning else []),
            *(f"- {note}" for note in notes),
        ]
    if problems:
        report += [
            "",
            "Missing or incomplete runs (curves stop where their logs do; the table counts only",
            "the phases they finished):",
            "",
            *(f"- {problem}" for problem in problems),
        ]
    paths["md"].write_text("\n".join(report) + "\n")
    print("\n".join(report))
    for problem in problems + ([data_warning] if data_warning else []):
        print(f"warning: {problem}", file=sys.stderr)
    print("wrote " + ", ".join(map(str, paths.values())))
    return 0


def write_aggregate(
    args: argparse.Namespace, loaded: list[tuple[RunCurve, DictConfig]], rng: np.random.Generator, problems
) -> int:
    """plot.py --aggregate: OUT.md and the figures OUT.png/pdf (aggregates), OUT_curves, OUT_improvement
    (two methods or more) and OUT_profile."""
    lines, figures = aggregate_report(loaded, args.by, args.metric, rng, args.resamples, args.paper)
    envs = sorted({config.env.name for _, config in loaded})
    report = [f"## Aggregates by {args.by} over {len(envs)} task(s): {', '.join(envs)}", "", *lines]
    if problems:
        report += ["", "Missing or incomplete runs (counted only in the phases they finished):", ""]
        report += [f"- {problem}" for problem in problems]
    out = output_stem(args, "aggregate_by")
    paths = [out.parent / f"{out.name}.md"]
    paths[0].write_text("\n".join(report) + "\n")
    for suffix, figure in figures.items():
        for kind in ("png", "pdf"):
            paths.append(out.parent / f"{out.name}{suffix}.{kind}")
            figure.savefig(paths[-1], dpi=150)
    print("\n".join(report))
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
