"""The published results a run can stand beside: the Q-chunking paper's curves (paper.py) and the QAM
authors' per-seed results (qam_results.py). Both name methods alike (FQL, RLPD, ...) on shared tasks, so a
run is matched to the source whose online budget it ran (Q-chunking 1M, QAM 500K), else to the first
source that has its method and task.
"""

from __future__ import annotations

from launch.analysis import paper, qam_results

Curves = dict[tuple[str, str, str], paper.PaperCurve]


def load_sources() -> dict[str, Curves]:
    """Every source's curves by its name, in order of preference."""
    return {"Q-chunking": paper.load_curves(), qam_results.SOURCE: qam_results.load_curves()}


def match_run(
    sources: dict[str, Curves], paper_label: str | None, env_name: str, online_steps: int
) -> paper.PaperCurve | None:
    """The published curve of method `paper_label` on `env_name` for a run of `online_steps` environment
    steps, None when no source has one."""
    found = [
        curve
        for curves in sources.values()
        if (curve := paper.match_curve(curves, paper_label, env_name)) is not None
    ]
    same_budget = [curve for curve in found if curve.budget[1] == online_steps]
    return (same_budget or found or [None])[0]


def source_of(sources: dict[str, Curves], members: list[paper.PaperCurve]) -> Curves | None:
    """The curves of the one source all `members` come from; None when they mix sources."""
    names = {curve.source for curve in members}
    return sources[names.pop()] if len(names) == 1 else None
