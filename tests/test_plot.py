"""launch/plot.py on hand-built sweeps with known answers, the launcher configs, and a real tiny multirun."""

import csv
import functools
import itertools
import json
import subprocess
import sys
from pathlib import Path

import matplotlib.colors
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from launch import paper, plot
from launch.aggregate import curves_figure
from tests import wandb_records
from tests.helpers import CONFIGS, compose_config

REPO = Path(__file__).resolve().parents[1]


@functools.cache
def paper_label(agent: str) -> str:
    """configs/agent/<agent>.yaml's paper_label as a run's saved config carries it (YAML)."""
    return json.dumps(compose_config(f"agent={agent}").agent.paper_label)


def write_run(
    run_dir: Path,
    evals: list[tuple[int, str, float]],
    chunk_length: int = 5,
    seed: int = 0,
    offline_steps: int = 100,
    online_steps: int = 100,
    agent: str = "qc_fql",
    env: str = "pointmaze-medium-navigate-v0",
    dataset_source: str = "downloaded",
) -> Path:
    """A run dir as train.py leaves it: .hydra/config.yaml and metrics.jsonl with eval and training rows.

    evals: (step, phase, eval/success); time is step / 10 s.
    """
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(
        f"seed: {seed}\noffline_steps: {offline_steps}\nonline_steps: {online_steps}\n"
        f"agent:\n  name: {agent}\n  paper_label: {paper_label(agent)}\n  chunk_length: {chunk_length}\n"
        "  hidden_dims: [32, 32]\n"
        f"env:\n  name: {env}\n  success_timing: null\ndataset:\n  source: {dataset_source}\n"
    )
    rows = []
    for step, phase, success in evals:
        rows.append({"step": step, "phase": phase, "time": step / 10, f"{phase}/critic/q_mean": 1.0})
        rows.append({"step": step, "phase": phase, "time": step / 10 + 0.05, "eval/success": success})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return run_dir


def full_run(run_dir: Path, offline_success: float, online_success: float, **kwargs) -> Path:
    """Evaluations at 50 and 100 (offline) and 150 and 200 (online): success rises to the given finals."""
    evals = [
        (50, "offline", offline_success / 2),
        (100, "offline", offline_success),
        (150, "online", (offline_success + online_success) / 2),
        (200, "online", online_success),
    ]
    return write_run(run_dir, evals, **kwargs)


def curve(x, y, value=1) -> plot.RunCurve:
    return plot.RunCurve(value, np.array(x, float), np.array(y, float), {}, 100, 100.0)


# ---- statistics -------------------------------------------------------------------------------------------


def test_bootstrap_of_identical_seeds_has_zero_width():
    low, high = plot.bootstrap_ci(np.full(5, 0.3), np.random.default_rng(0))
    assert low == pytest.approx(0.3) and high == pytest.approx(0.3)


def test_bootstrap_of_two_seeds_spans_them():
    # Resampled means of {0.2, 0.6} are 0.2, 0.4, 0.6 with probability 1/4, 1/2, 1/4: the 2.5% and 97.5%
    # quantiles are the two values themselves.
    assert plot.bootstrap_ci(np.array([0.2, 0.6]), np.random.default_rng(0)) == pytest.approx((0.2, 0.6))


def test_bootstrap_matches_the_normal_interval_for_many_seeds():
    values = np.random.default_rng(1).uniform(size=400)
    low, high = plot.bootstrap_ci(values, np.random.default_rng(2), resamples=20000)
    half_width = 1.959964 * values.std() / np.sqrt(len(values))
    assert (low + high) / 2 == pytest.approx(values.mean(), abs=0.1 * half_width)
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.05)


def test_align_interpolates_inside_each_run_and_never_extrapolates():
    early = curve([0, 100, 200], [0.0, 0.5, 1.0])
    crashed = curve([0, 50, 150], [0.2, 0.4, 0.8])
    grid, values = plot.align([early, crashed])
    np.testing.assert_array_equal(grid, [0, 50, 100, 150, 200])
    np.testing.assert_allclose(values, [[0.0, 0.25, 0.5, 0.75, 1.0], [0.2, 0.4, 0.6, 0.8, np.nan]])


def test_summarize_averages_the_runs_present_at_each_step():
    grid = np.array([0.0, 1.0, 2.0])
    values = np.array([[0.2, 0.4, np.nan], [0.6, 0.4, np.nan], [np.nan, 0.4, 1.0]])
    summary = plot.summarize(grid, values, np.random.default_rng(0))
    np.testing.assert_allclose(summary.mean, [0.4, 0.4, 1.0])
    np.testing.assert_array_equal(summary.n, [2, 3, 1])
    np.testing.assert_allclose(summary.low, [0.2, 0.4, 1.0])
    np.testing.assert_allclose(summary.high, [0.6, 0.4, 1.0])


# ---- runs from files ---------------------------------------------------------------------------------------


def test_complete_run_has_both_finals_and_no_problem(tmp_path):
    run_dir = full_run(tmp_path / "run", 0.4, 0.8)
    config = OmegaConf.load(run_dir / ".hydra/config.yaml")
    run, problem = plot.load_run(run_dir, config, "agent.chunk_length", "eval/success", "step")
    assert problem is None
    assert run.value == 5 and run.final == {"offline": 0.4, "online": 0.8}
    np.testing.assert_array_equal(run.x, [50, 100, 150, 200])
    np.testing.assert_allclose(run.y, [0.2, 0.4, 0.6, 0.8])
    assert run.offline_end == 100
    by_time, _ = plot.load_run(run_dir, config, "agent.chunk_length", "eval/success", "time")
    np.testing.assert_allclose(by_time.x, [5.05, 10.05, 15.05, 20.05])
    assert by_time.offline_end == pytest.approx(10.05)


def test_run_that_crashed_online_keeps_its_offline_final(tmp_path):
    run_dir = write_run(tmp_path / "run", [(50, "offline", 0.1), (100, "offline", 0.3), (150, "online", 0.5)])
    config = OmegaConf.load(run_dir / ".hydra/config.yaml")
    run, problem = plot.load_run(run_dir, config, "agent.chunk_length", "eval/success", "step")
    assert problem == "incomplete: last logged step 150, expected 200"
    assert run.final == {"offline": 0.3}


def test_half_written_last_line_is_skipped_and_reported(tmp_path):
    run_dir = full_run(tmp_path / "run", 0.4, 0.8)
    with (run_dir / "metrics.jsonl").open("a") as file:
        file.write('{"step": 20')
    config = OmegaConf.load(run_dir / ".hydra/config.yaml")
    run, problem = plot.load_run(run_dir, config, "agent.chunk_length", "eval/success", "step")
    assert problem == "1 unreadable line(s) in metrics.jsonl"
    assert run.final == {"offline": 0.4, "online": 0.8}


def test_list_values_name_a_curve_by_their_text(tmp_path):
    run_dir = full_run(tmp_path / "run", 0.4, 0.8)
    config = OmegaConf.load(run_dir / ".hydra/config.yaml")
    assert plot.swept_value(config, "agent.hidden_dims", run_dir) == "[32, 32]"
    with pytest.raises(ValueError, match="--by agent.lr: expected that key in every run's config"):
        plot.swept_value(config, "agent.lr", run_dir)


def test_expected_runs_counts_the_sweep_product(tmp_path):
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task: [agent=qc_fql, 'agent.chunk_length=1,5,10', 'seed=range(0,3)']\n"
    )
    assert plot.expected_runs(tmp_path) == 9
    (tmp_path / "multirun.yaml").write_text(  # a preset's sweep: the sweeper's params, then the command line
        "hydra:\n  sweeper:\n    params:\n      agent: qc,qc_fql,rlpd\n  overrides:\n    task: ['seed=0,1']\n"
    )
    assert plot.expected_runs(tmp_path) == 6
    (tmp_path / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: ['agent=glob(*)']\n")
    assert plot.expected_runs(tmp_path) is None
    assert plot.expected_runs(tmp_path / "elsewhere") is None


def test_plot_of_a_sweep_with_a_crashed_and_a_missing_run(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    (sweep).mkdir()
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task: ['agent.chunk_length=1,5', 'seed=range(0,3)']\n"
    )
    full_run(sweep / "h1_s0", 0.2, 0.4, chunk_length=1, seed=0)
    full_run(sweep / "h1_s1", 0.2, 0.4, chunk_length=1, seed=1)
    full_run(sweep / "h5_s0", 0.4, 0.6, chunk_length=5, seed=0)
    full_run(sweep / "h5_s1", 0.8, 1.0, chunk_length=5, seed=1)
    write_run(
        sweep / "h5_s2",
        [(50, "offline", 0.5), (100, "offline", 0.7), (150, "online", 0.9)],
        chunk_length=5,
        seed=2,
    )
    (sweep / "h1_s2" / ".hydra").mkdir(parents=True)
    (sweep / "h1_s2" / ".hydra" / "config.yaml").write_text(
        (sweep / "h1_s0" / ".hydra" / "config.yaml").read_text()
    )
    out = tmp_path / "figures" / "chunks.v1"
    assert plot.main([str(sweep), "--out", str(out)]) == 0
    assert (tmp_path / "figures" / "chunks.v1.png").stat().st_size > 10_000
    assert (tmp_path / "figures" / "chunks.v1.pdf").read_bytes().startswith(b"%PDF")
    report = (tmp_path / "figures" / "chunks.v1.md").read_text()
    lines = report.splitlines()
    assert lines[0] == "## qc_fql on pointmaze-medium-navigate-v0"
    # h=1: identical seeds (a zero-width interval). h=5: offline {0.4, 0.8, 0.7 (crashed online)},
    # online {0.6, 1.0}.
    assert "| 1 | 2 | 0.200 [0.200, 0.200] (2) | 0.400 [0.400, 0.400] (2) |" in lines
    h5 = next(line for line in lines if line.startswith("| 5 |")).split(" | ")
    assert h5[1] == "3" and h5[2].startswith("0.633 [") and h5[2].endswith("(3)")
    assert h5[3] == "0.800 [0.600, 1.000] (2) |"
    assert "- sweep/h1_s2: missing: no metrics.jsonl" in report
    assert "- sweep/h5_s2: incomplete: last logged step 150, expected 200" in report
    assert "jobs launched" not in report  # all 6 jobs of the sweep have a run dir
    captured = capsys.readouterr()
    assert "warning: sweep/h1_s2: missing" in captured.err
    assert "| 1 | 2 |" in captured.out


def test_plot_counts_jobs_that_never_started_and_compares_agents(tmp_path):
    sweeps = [tmp_path / "qc", tmp_path / "fql"]
    (tmp_path / "qc").mkdir()
    (tmp_path / "qc" / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: ['seed=0,1,2']\n")
    full_run(tmp_path / "qc" / "s0", 0.5, 0.9)
    full_run(tmp_path / "fql" / "s0", 0.3, 0.5, agent="fql", chunk_length=1)
    plot.main([*map(str, sweeps), "--by", "agent.name", "--x", "time", "--out", str(tmp_path / "agents")])
    report = (tmp_path / "agents.md").read_text()
    env = "pointmaze-medium-navigate-v0"
    assert report.splitlines()[0] == f"## fql on {env} | qc_fql on {env}"
    assert "| fql | 1 | 0.300 [0.300, 0.300] (1) | 0.500 [0.500, 0.500] (1) |" in report
    assert "| qc_fql | 1 | 0.500 [0.500, 0.500] (1) | 0.900 [0.900, 0.900] (1) |" in report
    assert f"- {tmp_path / 'qc'}: 3 jobs launched, 1 run dirs (the rest never started)" in report


def test_boundary_is_offline_steps_or_the_mean_time_runs_reached_it():
    runs = [
        plot.RunCurve(1, np.zeros(2), np.zeros(2), {}, steps, end)
        for steps, end in [(100, 10.0), (100, 14.0), (100, None), (200, 30.0), (0, 0.0)]
    ]
    assert plot.boundaries_of(runs, "step") == [100.0, 200.0]
    assert plot.boundaries_of(runs, "time") == [pytest.approx(18.0)]
    assert plot.boundaries_of(runs[4:], "time") == []


def test_plot_refuses_a_dir_without_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run"):
        plot.main([str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="expected a sweep or run dir"):
        plot.main([str(tmp_path / "absent")])


# ---- the paper's curves -----------------------------------------------------------------------------------

CUBE2 = "cube-double-play-singletask-task2-v0"


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


def drawn_figure(monkeypatch) -> list:
    """Patches plot.plot to keep the figures main() draws."""
    figures, draw = [], plot.plot

    def keep(*args, **kwargs):
        figures.append(draw(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(plot, "plot", keep)
    return figures


def band_vertices(axes, color: str) -> set[tuple[float, float]]:
    """The vertices of the hatched band (a paper curve's) in `color`."""
    rgb = matplotlib.colors.to_rgb(color)
    (band,) = [
        fill
        for fill in axes.collections
        if fill.get_hatch() == "//" and np.allclose(fill.get_facecolor()[0][:3], rgb)
    ]
    return {(round(x, 6), round(y, 6)) for x, y in band.get_paths()[0].vertices}


@pytest.mark.parametrize(
    "env, expected",
    [
        (CUBE2, ("ogbench", "cube-double-play-task2")),
        ("puzzle-3x3-play-singletask-task5-v0", ("ogbench", "puzzle-3x3-play-task5")),
        ("cube-quadruple-play-100m-singletask-task1-v0", ("ogbench", "cube-quadruple-play-task1")),
        ("lift-mh-low_dim", ("robomimic", "lift")),
        ("robomimic-square-mh-low_dim", ("robomimic", "square")),
        ("cube-double-noisy-singletask-task2-v0", None),
        ("pointmaze-medium-navigate-singletask-task1-v0", None),
    ],
)
def test_paper_task_of_an_env_name(env, expected):
    assert paper.paper_task(env) == expected


def test_paper_steps_map_onto_the_run_budget():
    steps = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    np.testing.assert_allclose(paper.to_run_steps(steps, 1_000_000, 1_000_000), steps * 1e6)
    np.testing.assert_allclose(paper.to_run_steps(steps, 100, 300), [0, 50, 100, 250, 400])
    np.testing.assert_allclose(paper.to_run_steps(steps[2:], 0, 300), [0, 150, 300])  # online only


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


def vector_run(run_dir: Path, agent: str, members: list[tuple[int, int]], missing: tuple = ()) -> Path:
    """A vector of runs as train.py leaves it: the parent's config with lists, one member dir per run."""
    (run_dir / ".hydra").mkdir(parents=True)
    tasks, seeds = sorted({task for task, _ in members}), sorted({seed for _, seed in members})
    (run_dir / ".hydra" / "config.yaml").write_text(
        f"seed: {seeds}\noffline_steps: 100\nonline_steps: 100\nagent:\n  name: {agent}\n"
        f"  paper_label: {paper_label(agent)}\n  chunk_length: 5\n"
        f"env:\n  task: {tasks}\n  name: cube-double-play-singletask-task${{env.task}}-v0\n"
    )
    for task, seed in members:
        member = run_dir / f"task={task},seed={seed}"
        full_run(
            member,
            0.1 * task,
            0.2 * task,
            agent=agent,
            seed=seed,
            env=f"cube-double-play-singletask-task{task}-v0",
        )
        if (task, seed) in missing:
            (member / "metrics.jsonl").unlink()
    return run_dir


def test_members_of_a_vector_of_runs_are_the_runs(tmp_path, monkeypatch):
    single = vector_run(tmp_path / "single", "qc_fql", [(2, 0), (2, 1), (2, 2)], missing=[(2, 2)])
    assert [run.name for _, job, run in plot.find_runs([single]) if job == single] == [
        "task=2,seed=0",
        "task=2,seed=1",
        "task=2,seed=2",
    ]
    plot.main([str(single), "--out", str(tmp_path / "single.png")])  # a figure's suffix is dropped
    written = sorted(path.name for path in tmp_path.glob("single.*"))
    assert written == ["single.md", "single.pdf", "single.png"]
    report = (tmp_path / "single.md").read_text()
    assert "| 5 | 2 | 0.200 [0.200, 0.200] (2) | 0.400 [0.400, 0.400] (2) |" in report
    assert "- single/task=2,seed=2: missing: no metrics.jsonl" in report
    assert "- single:" not in report  # the vector's own dir is no run

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: ['agent=qc,qc_fql,rlpd']\n")
    vector_run(sweep / "0", "qc", [(task, 0) for task in range(1, 6)])
    vector_run(sweep / "1", "qc_fql", [(1, 0), (3, 0)])
    figures = drawn_figure(monkeypatch)
    plot.main([str(sweep), "--by", "agent.name", "--paper", "--out", str(tmp_path / "sweep")])
    report = (tmp_path / "sweep.md").read_text()
    assert "| qc | 5 |" in report and "| qc_fql | 2 |" in report
    assert f"- {sweep}: 3 jobs launched, 2 run dirs (the rest never started)" in report
    labels = {line.get_label() for line in figures[0].axes[0].get_lines()}
    # All 5 tasks of a domain: the paper's own 5-task mean; other mixes: one curve per task.
    assert {
        "paper: QC (mean of cube-double's 5 tasks)",
        "paper: QC-FQL cube-double-play-task1",
        "paper: QC-FQL cube-double-play-task3",
    } <= labels


# ---- launchers ---------------------------------------------------------------------------------------------


def compose_hydra(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_basic_launcher_is_the_default():
    cfg = compose_hydra()
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "basic"
    assert cfg.resume is False


def test_local_launcher_runs_jobs_in_parallel_processes():
    cfg = compose_hydra("launcher=local", "hydra.launcher.n_jobs=3")
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "joblib"
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert cfg.hydra.launcher.n_jobs == 3


def test_slurm_launcher_composes_with_the_documented_keys():
    cfg = compose_hydra("launcher=slurm", "hydra.launcher.partition=gpu")
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "submitit_slurm"
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.partition == "gpu"
    assert (launcher.gpus_per_node, launcher.cpus_per_task, launcher.mem_gb) == (1, 8, 32)
    assert (launcher.timeout_min, launcher.max_num_timeout, launcher.array_parallelism) == (1440, 3, 64)
    assert launcher.account is None and list(launcher.setup) == []
    assert cfg.resume is True  # a requeued job continues from its checkpoint


# ---- end to end --------------------------------------------------------------------------------------------

TINY_SWEEP = [
    "agent=qc_fql",
    "preset=debug",
    "env=pointmaze",
    "env.download=false",
    "env.generate.num_episodes=null",
    "env.generate.max_episode_steps=null",
    "agent.hidden_dims=[16,16]",
    "batch_size=16",
    "offline_steps=20",
    "online_steps=20",
    "start_training=10",
    "eval_interval=10",
    "eval_episodes=1",
    "log_interval=10",
    "save_interval=20",
    "updates_per_dispatch=10",
    "env.max_episode_steps=10",
    "buffer_size=2000",
]


def test_multirun_then_plot(tiny_dataset_dir, tmp_path):
    sweep = tmp_path / "chunk-sweep"
    command = [
        sys.executable,
        "launch/train.py",
        "-m",
        *TINY_SWEEP,
        f"env.dataset_dir={tiny_dataset_dir}",
        "logger.mode=offline",
        "agent.chunk_length=1,2",
        f"hydra.sweep.dir={sweep}",
        "launcher=local",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dirs = sorted(sweep.glob("qc_fql/pointmaze-medium-navigate-singletask-task1-v0/*"))
    names = [run_dir.name for run_dir in run_dirs]
    assert names == ["0_chunk_length=1,seed=0", "1_chunk_length=2,seed=0"]
    for chunk_length, run_dir in enumerate(run_dirs, start=1):
        (path,) = wandb_records.run_files(run_dir)
        run = wandb_records.run_record(path)
        assert run.run_group == "chunk-sweep"
        assert {f"chunk_length={chunk_length}", "seed=0", "qc_fql"} <= set(run.tags)

    result = subprocess.run(
        [sys.executable, "launch/plot.py", str(sweep), "--out", str(tmp_path / "chunks")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "chunks.png").stat().st_size > 10_000
    table = (tmp_path / "chunks.md").read_text().splitlines()
    assert table[0] == "## qc_fql on pointmaze-medium-navigate-singletask-task1-v0"
    rows = [line.split(" | ") for line in table if line.startswith(("| 1 |", "| 2 |"))]
    assert [(row[1], row[2][-3:], row[3][-5:]) for row in rows] == [("1", "(1)", "(1) |")] * 2
    assert "Missing or incomplete" not in "\n".join(table)
    assert result.stderr == ""


# ---- aggregates (--aggregate) -----------------------------------------------------------------------------


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
    monkeypatch.setattr(plot.aggregate, "curves_figure", lambda *a: figures.append(a) or curves_figure(*a))
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
