"""The paper's published curves (paper.py) beside runs, on the runs' x: one per method and task the runs
have, or the paper's 5-task mean where a method's runs cover a whole OGBench domain; the paper's value at the
end of each phase; and notes on how the runs' setup differs from the paper's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig, OmegaConf

from launch.analysis import paper, yardsticks
from launch.analysis.runs import RunCurve


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


def overlay_of(
    label: str, curve: paper.PaperCurve, members: set, offline_steps: int, online_steps: int
) -> Overlay:
    """A paper curve on the x of runs with this budget."""
    keep = curve.step_millions >= (1.0 if offline_steps == 0 else 0.0)  # no offline phase to map onto
    x = paper.to_run_steps(curve.step_millions[keep], offline_steps, online_steps, curve.budget)
    return Overlay(label, curve, frozenset(members), x, curve.mean[keep], curve.low[keep], curve.high[keep])


def paper_overlays(
    runs: list[tuple[RunCurve, DictConfig]], sources: dict[str, yardsticks.Curves]
) -> tuple[list[Overlay], list[str]]:
    """The published curves beside these runs, on the runs' x, and notes for the report.

    One curve per method and task the runs have (from the source of the runs' budget, yardsticks.py); the
    source's 5-task mean where a method's runs cover a whole OGBench domain. Steps are mapped onto the budget
    most of the method's runs have.
    """
    tasks: dict[str, dict[str, paper.PaperCurve]] = {}
    values: dict[tuple[str, str], set] = {}
    budgets: dict[str, Counter] = {}
    notes, timings = set(), set()
    for run, config in runs:
        curve = yardsticks.match_run(
            sources, config.agent.get("paper_label"), config.env.name, config.online_steps
        )
        if curve is None:
            notes.add(f"no paper curve for {config.agent.name} on {config.env.name}")
            continue
        tasks.setdefault(curve.method, {}).setdefault(curve.task, curve)
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
        source = yardsticks.source_of(sources, list(matched.values()))
        aggregate = (
            paper.aggregate_curve(source, list(matched.values())) if len(matched) > 1 and source else None
        )
        every_value = set().union(*(values[(method, task)] for task in matched))
        if len(matched) == 1:
            (curve,) = matched.values()
            chosen = [(f"{source_label(curve)}: {method}", curve, every_value)]
        elif aggregate is not None:
            label = f"{source_label(aggregate)}: {method} (mean of {aggregate.task}'s 5 tasks)"
            chosen = [(label, aggregate, every_value)]
        else:
            chosen = [
                (f"{source_label(curve)}: {method} {task}", curve, values[(method, task)])
                for task, curve in matched.items()
            ]
        for label, curve, members in chosen:
            overlays.append(overlay_of(label, curve, members, offline_steps, online_steps))
            online_only = curve.step_millions[0] >= 1.0
            if online_steps != curve.budget[1] or (offline_steps != curve.budget[0] and not online_only):
                notes.add(
                    f"{label}: the paper's {curve.budget[0] / 1e6:g}M offline steps are mapped onto "
                    f"[0, {offline_steps}] and its {curve.budget[1] / 1e6:g}M online steps onto "
                    f"({offline_steps}, {offline_steps + online_steps}]"
                )
    notes |= setup_notes([curve for matched in tasks.values() for curve in matched.values()], timings)
    return overlays, sorted(notes)


def source_label(curve: paper.PaperCurve) -> str:
    """How a curve's label names its source: 'paper' for the Q-chunking paper's, else 'QAM paper'."""
    return "paper" if curve.source == "Q-chunking" else f"{curve.source} paper"


def setup_notes(matched: list[paper.PaperCurve], timings: set) -> set[str]:
    """How the setup of runs beside these paper curves differs from the paper's; timings: the runs'
    env.success_timing on OGBench."""
    notes = set()
    for curve in matched:
        if curve.task.startswith(("cube-quadruple", "puzzle-4x4")):
            domain, source = paper.task_domain(curve.task), source_label(curve)
            notes.add(f"the {source}'s {domain} curves were trained on the 100M-transition dataset")
    if timings - {"post"} and any(curve.source == "Q-chunking" for curve in matched):
        used = ", ".join(sorted("null" if timing is None else timing for timing in timings))
        notes.add(
            "the paper ran OGBench 1.1.2, whose single-task envs judge success after each step "
            f"(env.success_timing=post); these runs used {used}"
        )
    return notes


def paper_cell(overlays: list[Overlay], phase: str) -> str:
    """The paper's mean [95% CI] at the end of `phase` (1M or 2M steps) for each overlay of one group."""
    cells = []
    for overlay in overlays:
        online_only = overlay.curve.step_millions[0] >= 1.0  # no offline phase to end
        point = None if phase == "offline" and online_only else overlay.curve.at(overlay.curve.end_of(phase))
        text = "n/a" if point is None else "{:.3f} [{:.3f}, {:.3f}]".format(*point)
        cells.append(f"{overlay.label.split(': ', 1)[1]}: {text}" if len(overlays) > 1 else text)
    return "; ".join(cells) or "n/a"


def generated_data_warning(configs: list[DictConfig]) -> str | None:
    """A warning when runs compared with the paper trained on locally generated data (their config's
    `dataset.source`, launch/engine/run.py), which is not the data the paper's curves were trained on."""
    generated = [config for config in configs if OmegaConf.select(config, "dataset.source") == "generated"]
    if not generated:
        return None
    return (
        f"{len(generated)} of {len(configs)} runs trained on locally generated data, not the published "
        "dataset the paper used"
    )
