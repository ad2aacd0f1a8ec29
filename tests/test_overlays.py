"""launch/analysis/overlays.py: the paper's curves drawn beside runs by `plot.py --paper`, checked against
the shipped CSV."""

import csv
from pathlib import Path

import matplotlib.colors
import numpy as np
import pytest

from launch import plot
from launch.analysis import paper, qam_results
from launch.analysis.qam_results import BUDGET
from tests.test_curves import drawn_figure
from tests.test_paper import CUBE2
from tests.test_runs import full_run

REPO = Path(__file__).resolve().parents[1]
TRIPLE2 = "cube-triple-play-singletask-task2-v0"


def csv_rows(task: str, method: str) -> dict[float, tuple[float, float, float]]:
    """step_millions -> (mean, low, high) of one paper curve, read straight from the shipped CSV."""
    with (REPO / "data" / "paper" / "q-chunking-curves.csv").open() as file:
        return {
            float(row["step_millions"]): (
                float(row["success_mean"]),
                float(row["ci95_low"]),
                float(row["ci95_high"]),
            )
            for row in csv.DictReader(file)
            if (row["benchmark"], row["task"], row["method"]) == ("ogbench", task, method)
        }


def band_vertices(axes, color: str) -> set[tuple[float, float]]:
    """The vertices of the hatched band (a paper curve's) in `color`."""
    rgb = matplotlib.colors.to_rgb(color)
    (band,) = [
        fill
        for fill in axes.collections
        if fill.get_hatch() == "//" and np.allclose(fill.get_facecolor()[0][:3], rgb)
    ]
    return {(round(x, 6), round(y, 6)) for x, y in band.get_paths()[0].vertices}


def test_paper_overlay_on_a_cube_double_sweep(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    full_run(sweep / "fql_s0", 0.2, 0.6, agent="qc_fql", env=CUBE2, seed=0)
    full_run(sweep / "fql_s1", 0.4, 0.8, agent="qc_fql", env=CUBE2, seed=1)
    full_run(sweep / "qc_s0", 0.1, 0.3, agent="qc", env=CUBE2)
    full_run(sweep / "dt_s0", 0.0, 0.1, agent="dt", env=CUBE2)  # no paper counterpart: plotted as usual
    figures = drawn_figure(monkeypatch)
    assert plot.main([str(sweep), "--by", "agent.name", "--paper", "--out", str(tmp_path / "vs")]) == 0

    axes = figures[0].axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert {"name=dt (1 runs)", "name=qc (1 runs)", "name=qc_fql (2 runs)"} <= set(lines)
    for method, runs in (("QC-FQL", 2), ("QC", 1)):
        published = csv_rows("cube-double-play-task2", method)
        line = lines[f"paper: {method}"]
        assert line.get_linestyle() == "--"
        assert line.get_color() == lines[f"name={method.lower().replace('-', '_')} ({runs} runs)"].get_color()
        steps = np.array(sorted(published))
        np.testing.assert_allclose(line.get_xdata(), paper.to_run_steps(steps, 100, 100))  # 100 + 100 budget
        np.testing.assert_allclose(line.get_ydata(), [published[step][0] for step in steps])
        vertices = band_vertices(axes, line.get_color())
        for x, (_, low, high) in zip(line.get_xdata(), (published[step] for step in steps), strict=True):
            assert (round(x, 6), round(low, 6)) in vertices and (round(x, 6), round(high, 6)) in vertices
    assert not any(label.startswith("paper: ") and "QC" not in label for label in lines)

    report = (tmp_path / "vs.md").read_text()
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in report.splitlines()]
    rows = {row[0]: row for row in cells if len(row) == 6}
    assert rows["agent.name"][3::2] == [
        "paper end of offline: mean [95% CI]",
        "paper end of online: mean [95% CI]",
    ]
    for agent, method in (("qc_fql", "QC-FQL"), ("qc", "QC")):
        published = csv_rows("cube-double-play-task2", method)
        expected = ["{:.3f} [{:.3f}, {:.3f}]".format(*published[step]) for step in (1.0, 2.0)]
        assert rows[agent][3::2] == expected
    assert rows["dt"][3::2] == ["n/a", "n/a"]
    assert f"- no paper curve for dt on {CUBE2}" in report
    assert "mapped onto [0, 100]" in report and "env.success_timing=post" in report
    assert "generated" not in report and figures[0].get_suptitle() == ""


def test_paper_comparison_warns_of_runs_on_generated_data(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "sweep"
    full_run(sweep / "s0", 0.2, 0.6, env=CUBE2, seed=0)
    full_run(sweep / "s1", 0.4, 0.8, env=CUBE2, seed=1, dataset_source="generated")
    figures = drawn_figure(monkeypatch)
    assert plot.main([str(sweep), "--by", "agent.name", "--paper", "--out", str(tmp_path / "vs")]) == 0
    warning = "1 of 2 runs trained on locally generated data, not the published dataset the paper used"
    assert figures[0].get_suptitle() == f"warning: {warning}"
    assert f"- **warning: {warning}**" in (tmp_path / "vs.md").read_text().splitlines()
    assert f"warning: {warning}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("agent", "method"),
    [("iql", "IQL"), ("rebrac", "ReBRAC"), ("ifql", "IFQL"), ("ifql_n", "IFQL-n"), ("qc_ifql", "QC-IFQL")],
)
def test_paper_overlay_draws_each_offline_to_online_baseline(tmp_path, monkeypatch, agent, method):
    full_run(tmp_path / "sweep" / agent, 0.2, 0.6, agent=agent, env=CUBE2)
    figures = drawn_figure(monkeypatch)
    assert (
        plot.main([str(tmp_path / "sweep"), "--by", "agent.name", "--paper", "--out", str(tmp_path / "o")])
        == 0
    )
    lines = {line.get_label(): line for line in figures[0].axes[0].get_lines()}
    published = csv_rows("cube-double-play-task2", method)
    steps = np.array(sorted(published))
    assert len(steps) > 2
    line = lines[f"paper: {method}"]
    np.testing.assert_allclose(line.get_xdata(), paper.to_run_steps(steps, 100, 100))
    np.testing.assert_allclose(line.get_ydata(), [published[step][0] for step in steps])


@pytest.mark.parametrize(("agent", "method"), [("fql", "FQL"), ("qam_e", "QAM-E"), ("dsrl", "DSRL")])
def test_qam_results_beside_a_run_of_their_budget(tmp_path, monkeypatch, agent, method):
    """A run of QAM's online budget (500K) stands beside the QAM authors' curve of its method, not
    Q-chunking's."""
    for seed in (0, 1):
        full_run(tmp_path / "sweep" / f"s{seed}", 0.2, 0.6, agent=agent, env=TRIPLE2, online_steps=500_000)
    figures = drawn_figure(monkeypatch)
    args = [str(tmp_path / "sweep"), "--by", "agent.name", "--paper", "--out", str(tmp_path / "q")]
    assert plot.main(args) == 0
    published = qam_results.load_curves()[("ogbench", "cube-triple-play-task2", method)]
    lines = {line.get_label(): line for line in figures[0].axes[0].get_lines()}
    assert not any(label.startswith("paper: ") for label in lines)
    line = lines[f"QAM paper: {method}"]
    x = paper.to_run_steps(published.step_millions, 100, 500_000, BUDGET)
    np.testing.assert_allclose(line.get_xdata(), x)
    np.testing.assert_allclose(line.get_ydata(), published.mean)
    report = (tmp_path / "q.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith(f"| {agent} |"))
    for step in (1.0, 1.5):  # the end of QAM's offline and online phases
        assert "{:.3f} [{:.3f}, {:.3f}]".format(*published.at(step)) in row
    assert "Paper (QAM): the authors' published results (data/paper/qam/qam-results.csv.gz)" in report
