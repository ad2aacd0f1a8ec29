"""plot.py --aggregate: rliable's aggregates (aggregate.py) of runs grouped by method (the swept value) and
task (env.name), with the paper's aggregate curves beside them: Markdown lines and figures.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from matplotlib.figure import Figure
from omegaconf import DictConfig

from launch.analysis import aggregate, paper, yardsticks
from launch.analysis.curves import align, sort_values
from launch.analysis.overlays import Overlay, overlay_of, paper_cell, setup_notes, source_label
from launch.analysis.runs import PHASES, RunCurve


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
    """The published aggregate curve (Q-chunking's or QAM's table, yardsticks.py) beside each method whose
    runs a source has, on the runs' x."""
    sources, overlays, timings, matched = yardsticks.load_sources(), {}, set(), []
    for value, by_task in methods.items():
        runs = [run for column in by_task.values() for run in column]
        (offline_steps, online_steps), _ = Counter(
            (run.offline_steps, config.online_steps) for run, config in runs
        ).most_common(1)[0]
        members = [
            yardsticks.match_run(sources, column[0][1].agent.get("paper_label"), task, online_steps)
            for task, column in by_task.items()
        ]
        if None in members:
            notes.append(f"{value}: no paper curve for some of its tasks, so no paper aggregate")
            continue
        source = yardsticks.source_of(sources, members)
        found = None if source is None else paper.covering_aggregate(source, members)
        if found is None:
            notes.append(f"{value}: the paper publishes no aggregate for {members[0].benchmark}")
            continue
        curve, covers = found
        label = f"{source_label(curve)}: {curve.method} (mean of {covers})"
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
