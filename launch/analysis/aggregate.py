"""rliable's statistics (Agarwal et al., NeurIPS 2021) for launch/plot.py: seeded stratified bootstrap
intervals, the aggregates of final success over runs x tasks, IQM curves over steps, probability of
improvement and performance profiles, and their figures and Markdown tables.

Scores are success rates in [0, 1], arranged as rliable expects: (num_runs, num_tasks[, num_points]). The
bootstrap is rliable's stratified one: runs are resampled with replacement within each task (and each
point of a curve), tasks are kept. Intervals are percentile intervals at 95%.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import scipy.stats
from matplotlib.figure import Figure
from rliable import library, metrics

CONFIDENCE = 0.95
AGGREGATES = {
    "IQM": metrics.aggregate_iqm,
    "mean": metrics.aggregate_mean,
    "median": metrics.aggregate_median,
    "optimality gap": metrics.aggregate_optimality_gap,
}
PROFILE_TAUS = np.linspace(0.0, 1.0, 101)
PROFILE_TABLE_TAUS = (0.25, 0.5, 0.75)

Interval = tuple[np.ndarray, np.ndarray, np.ndarray]  # point estimate, low, high, each of the func's shape


@contextlib.contextmanager
def seeded(rng: np.random.Generator) -> Iterator[None]:
    """NumPy's global RNG seeded from rng for the duration, then restored.

    rliable draws its resampling indices from the global RNG (np.random.choice; its random_state argument
    does not reach them), so this is what makes a band reproducible from --seed.
    """
    state = np.random.get_state()
    np.random.seed(int(rng.integers(2**32)))
    try:
        yield
    finally:
        np.random.set_state(state)


def interval(
    scores: np.ndarray | list[np.ndarray],
    func: Callable[..., np.ndarray],
    rng: np.random.Generator,
    resamples: int,
) -> Interval:
    """func of scores and its 95% stratified-bootstrap interval (rliable.library.get_interval_estimates).

    scores: (num_runs, num_tasks, ...), or a list of such arrays resampled independently (runs may differ).
    """
    with seeded(rng):
        points, intervals = library.get_interval_estimates(
            {"": scores}, func, reps=resamples, confidence_interval_size=CONFIDENCE
        )
    return np.asarray(points[""]), intervals[""][0], intervals[""][1]


def aggregates(scores: np.ndarray, rng: np.random.Generator, resamples: int) -> dict[str, tuple]:
    """IQM, mean, median and optimality gap of scores (num_runs, num_tasks): name -> (value, low, high)."""
    point, low, high = interval(
        scores, lambda s: np.array([func(s) for func in AGGREGATES.values()]), rng, resamples
    )
    return {name: (point[i], low[i], high[i]) for i, name in enumerate(AGGREGATES)}


def point_curves(scores: np.ndarray) -> np.ndarray:
    """IQM and mean at each point of scores (num_runs, num_tasks, num_points): (2 * num_points,).

    metrics.aggregate_iqm and aggregate_mean per point, vectorized (the same trimmed mean over runs x tasks).
    """
    flat = scores.reshape(-1, scores.shape[-1])
    return np.concatenate([scipy.stats.trim_mean(flat, 0.25, axis=0), scores.mean(axis=(0, 1))])


def curves(scores: np.ndarray, rng: np.random.Generator, resamples: int) -> dict[str, Interval]:
    """IQM and mean curves of scores (num_runs, num_tasks, num_points), with pointwise 95% intervals."""
    halves = [np.split(array, 2) for array in interval(scores, point_curves, rng, resamples)]
    return {name: tuple(array[i] for array in halves) for i, name in enumerate(("IQM", "mean"))}


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """rliable's metrics.probability_of_improvement (Mann-Whitney U / (num_runs_x * num_runs_y) per task,
    averaged over tasks) of x, y (runs, tasks), without a scipy call per task: a bootstrap makes thousands."""
    above = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1))
    ties = (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))
    return float((above + 0.5 * ties).mean())


def improvement(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, resamples: int) -> tuple:
    """P(X > Y) (ties count half) averaged over tasks, of scores x, y (runs, tasks): (value, low, high); the
    runs of x and y are resampled independently."""
    point, low, high = interval([x, y], probability_of_improvement, rng, resamples)
    return float(point), float(np.squeeze(low)), float(np.squeeze(high))


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """rliable's library.score_distributions (the fraction of runs x tasks above each tau), vectorized."""
    return (scores[..., None] > taus).reshape(-1, len(taus)).mean(axis=0)


def profile(scores: np.ndarray, rng: np.random.Generator, resamples: int) -> Interval:
    """Performance profile: the fraction of runs x tasks with a score above each of PROFILE_TAUS."""
    with seeded(rng):
        fractions, bands = library.create_performance_profile(
            {"": scores},
            PROFILE_TAUS,
            custom_profile_func=score_distribution,
            reps=resamples,
            confidence_interval_size=CONFIDENCE,
        )
    return fractions[""], bands[""][0], bands[""][1]


def cell(value: float, low: float, high: float) -> str:
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def aggregate_table(by: str, results: dict[object, dict[str, tuple]], shapes: dict, paper: dict) -> str:
    """Markdown: per method, runs x tasks and each aggregate [95% CI]; `paper`: method -> the paper's
    mean [95% CI] cell, a column only when given."""
    header = [by, "runs x tasks", *(f"{name} [95% CI]" for name in AGGREGATES)]
    if paper:
        header.append("paper mean [95% CI]")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, result in results.items():
        cells = [
            str(method),
            "{} x {}".format(*shapes[method]),
            *(cell(*result[name]) for name in AGGREGATES),
        ]
        if paper:
            cells.append(paper.get(method, "n/a"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def improvement_table(by: str, pairs: dict[tuple, tuple], tasks: dict[tuple, int]) -> str:
    """Markdown: P(X > Y) [95% CI] for each ordered pair of methods, over the tasks both have."""
    lines = [f"| {by} X | {by} Y | P(X > Y) [95% CI] | tasks |", "|---|---|---|---|"]
    lines += [f"| {x} | {y} | {cell(*value)} | {tasks[(x, y)]} |" for (x, y), value in pairs.items()]
    return "\n".join(lines)


def profile_table(by: str, profiles: dict[object, Interval]) -> str:
    """Markdown: the profile at a few thresholds."""
    header = [by, *(f"runs > {tau} [95% CI]" for tau in PROFILE_TABLE_TAUS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, (fraction, low, high) in profiles.items():
        index = [int(np.argmin(np.abs(PROFILE_TAUS - tau))) for tau in PROFILE_TABLE_TAUS]
        lines.append(f"| {method} | " + " | ".join(cell(fraction[i], low[i], high[i]) for i in index) + " |")
    return "\n".join(lines)


def colors_of(methods: list) -> dict:
    """One colour per method, the same in every figure."""
    return {method: f"C{index % 10}" for index, method in enumerate(methods)}


def aggregate_figure(by: str, results: dict[str, dict[object, dict]], colors: dict, title: str) -> Figure:
    """results: phase -> method -> aggregate -> (value, low, high). One row per phase, one panel per
    aggregate: each method's value and interval, as rliable's plot_interval_estimates draws them."""
    height = 1.2 + (0.6 + 0.35 * len(colors)) * len(results)
    figure = Figure(figsize=(3.0 * len(AGGREGATES), height), layout="constrained")
    panels = figure.subplots(len(results), len(AGGREGATES), squeeze=False)
    for row, (phase, by_method) in zip(panels, results.items(), strict=True):
        methods = list(by_method)
        for axes, name in zip(row, AGGREGATES, strict=True):
            for index, method in enumerate(methods):
                value, low, high = by_method[method][name]
                axes.barh(index, high - low, left=low, height=0.6, color=colors[method], alpha=0.75)
                axes.vlines(value, index - 0.3, index + 0.3, color="black", linewidth=1.5)
            axes.set_yticks(range(len(methods)), [str(method) for method in methods] if name == "IQM" else [])
            axes.invert_yaxis()
            axes.set_title(f"{name} ({phase})", fontsize="medium")
            axes.grid(axis="x", alpha=0.3)
    figure.supxlabel("final success (optimality gap: 1 - mean of min(score, 1); lower is better)")
    figure.suptitle(f"{title}\nby {by}; 95% stratified bootstrap CIs", fontsize="medium")
    return figure


def curves_figure(
    by: str,
    results: dict[object, tuple[np.ndarray, dict[str, Interval]]],
    colors: dict,
    boundaries: list[float],
    overlays: list,
    title: str,
) -> Figure:
    """IQM (left) and mean (right) over steps per method with 95% bands; overlays (the paper's aggregate
    curves, means) dashed and hatched on the mean panel; grey dashes at the offline/online boundaries."""
    figure = Figure(figsize=(11.0, 4.2), layout="constrained")
    panels = figure.subplots(1, 2, sharey=True)
    for axes, name in zip(panels, ("IQM", "mean"), strict=True):
        for method, (x, by_name) in results.items():
            value, low, high = by_name[name]
            axes.plot(x, value, color=colors[method], label=str(method))
            axes.fill_between(x, low, high, color=colors[method], alpha=0.2, linewidth=0)
        for index, boundary in enumerate(boundaries):
            axes.axvline(
                boundary,
                color="gray",
                linestyle="--",
                linewidth=1,
                label=None if index else "offline | online",
            )
        axes.set_title(f"{name} of success over runs x tasks")
        axes.set_xlabel("steps (offline: updates, online: offline_steps + env steps)")
        axes.grid(alpha=0.3)
    for overlay in overlays:
        (value,) = overlay.values  # the paper's curve stands beside one method: drawn in its colour
        (line,) = panels[1].plot(
            overlay.x, overlay.mean, linestyle="--", label=overlay.label, color=colors[value]
        )
        panels[1].fill_between(
            overlay.x, overlay.low, overlay.high, color=colors[value], alpha=0.12, linewidth=0, hatch="//"
        )
    panels[0].set_ylabel("success")
    for axes in panels:
        axes.legend(fontsize="small")
    figure.suptitle(f"{title}\nby {by}; 95% stratified bootstrap bands", fontsize="medium")
    return figure


def improvement_figure(by: str, pairs: dict[tuple, tuple], colors: dict, phase: str) -> Figure:
    """P(X > Y) with its interval for each ordered pair, 0.5 (no difference) marked."""
    figure = Figure(figsize=(6.4, 0.9 + 0.4 * len(pairs)), layout="constrained")
    axes = figure.add_subplot()
    for index, ((x, _), (value, low, high)) in enumerate(pairs.items()):
        axes.barh(index, high - low, left=low, height=0.6, color=colors[x], alpha=0.75)
        axes.plot(value, index, "o", color="black", markersize=4)  # visible at 0 and 1 too
    axes.set_yticks(range(len(pairs)), [f"{x} > {y}" for x, y in pairs])
    axes.invert_yaxis()  # the table's order, top down
    axes.axvline(0.5, color="gray", linestyle="--", linewidth=1)
    axes.set_xlim(-0.03, 1.03)
    axes.set_xlabel(f"probability of improvement, end of {phase} (95% CI)")
    axes.set_title(f"P(X > Y) by {by}")
    axes.grid(axis="x", alpha=0.3)
    return figure


def profile_figure(by: str, profiles: dict[str, dict[object, Interval]], colors: dict) -> Figure:
    """profiles: phase -> method -> the profile over PROFILE_TAUS with its band; one panel per phase."""
    figure = Figure(figsize=(5.2 * len(profiles), 4.0), layout="constrained")
    panels = figure.subplots(1, len(profiles), squeeze=False)[0]
    for axes, (phase, by_method) in zip(panels, profiles.items(), strict=True):
        for method, (fraction, low, high) in by_method.items():
            axes.plot(PROFILE_TAUS, fraction, color=colors[method], label=str(method))
            axes.fill_between(PROFILE_TAUS, low, high, color=colors[method], alpha=0.2, linewidth=0)
        axes.set_xlabel(f"final success at the end of {phase} (tau)")
        axes.set_title(f"performance profile ({phase})")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    panels[0].set_ylabel("fraction of runs x tasks with success > tau")
    figure.suptitle(f"by {by}; 95% stratified bootstrap bands", fontsize="medium")
    return figure
