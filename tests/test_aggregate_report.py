"""launch/analysis/aggregate_report.py: `plot.py --aggregate` on hand-built sweeps with known aggregates,
and beside the paper's aggregate curve."""

import itertools

import numpy as np
import pytest

from launch import plot
from launch.analysis import aggregate, paper, qam_results
from launch.analysis.aggregate import curves_figure
from tests.test_runs import full_run, vector_run, write_run


def table_rows(report: str, heading: str) -> dict[str, list[str]]:
    """The rows of the Markdown table under `heading`, by their first cell."""
    lines = report.split(f"### {heading}\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: row[1:] for row in cells}


def test_aggregate_of_a_sweep_of_two_methods(tmp_path):
    sweep = tmp_path / "sweep"
    finals = {}  # (agent, task, seed) -> (offline, online)
    for agent, base in (("qc", 0.5), ("fql", 0.2)):
        for task, seed in itertools.product((1, 2), range(3)):
            finals[(agent, task, seed)] = (base / 2 + 0.05 * seed, base + 0.1 * task + 0.05 * seed)
            env = f"cube-double-play-singletask-task{task}-v0"
            full_run(
                sweep / f"{agent}_{task}_{seed}",
                *finals[(agent, task, seed)],
                agent=agent,
                env=env,
                seed=seed,
            )
    out = tmp_path / "figures" / "agg"
    assert (
        plot.main([str(sweep), "--by", "agent.name", "--aggregate", "--resamples", "300", "--out", str(out)])
        == 0
    )
    for name in ("agg", "agg_curves", "agg_improvement", "agg_profile"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 10_000
        assert (tmp_path / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    report = (tmp_path / "figures" / "agg.md").read_text()
    for phase, index in (("offline", 0), ("online", 1)):
        rows = table_rows(report, f"End of {phase}")
        for agent in ("qc", "fql"):
            scores = np.array([[finals[(agent, task, seed)][index] for task in (1, 2)] for seed in range(3)])
            assert rows[agent][0] == "3 x 2"
            ordered = np.sort(scores.ravel())
            assert rows[agent][1].startswith(f"{ordered[1:5].mean():.3f} [")  # IQM: 6 scores, 1 cut per end
            assert rows[agent][2].startswith(f"{scores.mean():.3f} [")
            assert rows[agent][4].startswith(f"{1 - scores.mean():.3f} [")
    improvement = table_rows(report, "Probability of improvement (end of online)")
    assert improvement["qc"] == ["fql", "1.000 [1.000, 1.000]", "2"]  # every qc run beats every fql run
    assert improvement["fql"] == ["qc", "0.000 [0.000, 0.000]", "2"]
    profile = table_rows(report, "Performance profile (end of online)")
    assert profile["fql"][1] == "0.000 [0.000, 0.000]"  # no fql run above 0.5 online (finals 0.3 to 0.5)
    assert profile["qc"][1] == "1.000 [1.000, 1.000]"
    again = tmp_path / "again"
    plot.main([str(sweep), "--by", "agent.name", "--aggregate", "--resamples", "300", "--out", str(again)])
    assert (tmp_path / "again.md").read_text() == report  # a seeded bootstrap: the same intervals


def test_aggregate_of_a_vector_with_the_papers_curves(tmp_path, monkeypatch):
    vector = vector_run(tmp_path / "qc", "qc", [(task, seed) for task in (1, 2, 3) for seed in (0, 1)])
    figures = []
    monkeypatch.setattr(aggregate, "curves_figure", lambda *a: figures.append(a) or curves_figure(*a))
    plot.main(
        [
            str(vector),
            "--by",
            "agent.name",
            "--aggregate",
            "--paper",
            "--resamples",
            "100",
            "--out",
            str(tmp_path / "agg"),
        ]
    )
    report = (tmp_path / "agg.md").read_text()
    assert "## Aggregates by agent.name over 3 task(s)" in report
    published = paper.load_curves()[("ogbench-aggregate", "cube-double", "QC")]
    for phase, step in (("offline", 1.0), ("online", 2.0)):
        row = table_rows(report, f"End of {phase}")["qc"]
        assert row[0] == "2 x 3"
        assert row[-1] == "{:.3f} [{:.3f}, {:.3f}]".format(*published.at(step))
    (overlay,) = figures[0][4]
    assert overlay.label == "paper: QC (mean of cube-double's 5 tasks)"
    np.testing.assert_allclose(overlay.x, paper.to_run_steps(published.step_millions, 100, 100))
    np.testing.assert_allclose(overlay.mean, published.mean)
    assert "_improvement" not in str(sorted(tmp_path.iterdir()))  # one method: nothing to compare
    assert (tmp_path / "agg_curves.png").stat().st_size > 10_000


def test_aggregate_needs_steps_and_a_finished_phase(tmp_path):
    write_run(tmp_path / "run", [(50, "offline", 0.1)])
    with pytest.raises(ValueError, match="--aggregate: expected --x step"):
        plot.main([str(tmp_path), "--aggregate", "--x", "time"])
    with pytest.raises(ValueError, match="--aggregate: no method has a run that ended a phase"):
        plot.main([str(tmp_path), "--aggregate"])


def test_aggregate_beside_qams_table(tmp_path, monkeypatch):
    """Runs of a whole QAM domain stand beside the authors' 12-seed domain mean at the end of each phase."""
    for task in range(1, 6):
        env = f"antmaze-large-navigate-singletask-task{task}-v0"
        full_run(tmp_path / "sweep" / f"t{task}", 0.1 * task, 0.2 * task, agent="fql", env=env)
    figures = []
    monkeypatch.setattr(aggregate, "curves_figure", lambda *a: figures.append(a) or curves_figure(*a))
    out = str(tmp_path / "agg")
    args = [str(tmp_path / "sweep"), "--by", "agent.name", "--aggregate", "--paper", "--resamples", "100"]
    plot.main([*args, "--out", out])
    report = (tmp_path / "agg.md").read_text()
    published = qam_results.load_curves()[("ogbench-aggregate", "antmaze-large", "FQL")]
    for phase in ("offline", "online"):
        row = table_rows(report, f"End of {phase}")["fql"]
        assert row[-1] == "{:.3f} [{:.3f}, {:.3f}]".format(*published.at(published.end_of(phase)))
    (overlay,) = figures[0][4]
    assert overlay.label == "QAM paper: FQL (mean of antmaze-large's 5 tasks)"
    np.testing.assert_allclose(overlay.mean, published.mean)
