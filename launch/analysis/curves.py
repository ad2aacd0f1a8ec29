"""Curves of runs averaged by the value of a swept key: aligned on common x, a mean with a 95% bootstrap band,
their figure, and the metric at the end of each phase.

Alignment: each run's curve is linearly interpolated onto the union of the x values of its group, inside the
run's own range only (never extrapolated). A run that stopped early drops out after its last point, and the
band there is over fewer runs.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from launch.analysis import aggregate
from launch.analysis.overlays import Overlay, paper_cell
from launch.analysis.runs import PHASES, RunCurve

LEGEND_INSIDE = 8  # legend entries drawn over the axes; more go beside them


@dataclass(frozen=True)
class Summary:
    """Mean and percentile-bootstrap band over runs at each x; n: runs present there. All (num_points,)."""

    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray


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
        xlabel += "\npaper: its offline and online steps mapped onto this budget"
    axes.set_xlabel(xlabel)
    axes.set_ylabel(metric)
    axes.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=10)
    axes.grid(alpha=0.3)
    if len(axes.get_legend_handles_labels()[1]) > LEGEND_INSIDE:  # beside the axes, not over the curves
        figure.set_figwidth(figure.get_figwidth() + 3.2)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    else:
        axes.legend()
    return figure


def boundaries_of(curves: list[RunCurve], x_key: str) -> list[float]:
    """The x of each distinct offline/online boundary of these runs: offline_steps, or the mean time at
    which they reached it."""
    if x_key == "step":
        return sorted({float(curve.offline_steps) for curve in curves if curve.offline_steps > 0})
    times = [curve.offline_end for curve in curves if curve.offline_end and curve.offline_steps > 0]
    return [float(np.mean(times))] if times else []
