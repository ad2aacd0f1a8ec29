"""launch/analysis/runs.py: the runs under a dir, and each one's curve from hand-built run dirs with known
answers (a crashed run, a torn last line, a vector's members)."""

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from launch import plot
from launch.analysis.runs import expected_runs, find_runs, load_run, swept_value
from tests.helpers import compose_config
from tests.test_curves import drawn_figure


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


def test_complete_run_has_both_finals_and_no_problem(tmp_path):
    run_dir = full_run(tmp_path / "run", 0.4, 0.8)
    config = OmegaConf.load(run_dir / ".hydra/config.yaml")
    run, problem = load_run(run_dir, config, "agent.chunk_length", "eval/success", "step")
    assert problem is None
    assert run.value == 5 and run.final == {"offline": 0.4, "online": 0.8}
    np.testing.assert_array_equal(run.x, [50, 100, 150, 200])
    np.testing.assert_allclose(run.y, [0.2, 0.4, 0.6, 0.8])
    assert run.offline_end == 100
    by_time, _ = load_run(run_dir, config, "agent.chunk_length", "eval/success", "time")
    np.testing.assert_allclose(by_time.x, [5.05, 10.05, 15.05, 20.05])
    assert by_time.offline_end == pytest.approx(10.05)


def test_run_that_crashed_online_keeps_its_offline_final(tmp_path):
    run_dir = write_run(tmp_path / "run", [(50, "offline", 0.1), (100, "offline", 0.3), (150, "online", 0.5)])
    config = OmegaConf.load(run_dir / ".hydra/config.yaml")
    run, problem = load_run(run_dir, config, "agent.chunk_length", "eval/success", "step")
    assert problem == "incomplete: last logged step 150, expected 200"
    assert run.final == {"offline": 0.3}


def test_half_written_last_line_is_skipped_and_reported(tmp_path):
    run_dir = full_run(tmp_path / "run", 0.4, 0.8)
    with (run_dir / "metrics.jsonl").open("a") as file:
        file.write('{"step": 20')
    config = OmegaConf.load(run_dir / ".hydra/config.yaml")
    run, problem = load_run(run_dir, config, "agent.chunk_length", "eval/success", "step")
    assert problem == "1 unreadable line(s) in metrics.jsonl"
    assert run.final == {"offline": 0.4, "online": 0.8}


def test_list_values_name_a_curve_by_their_text(tmp_path):
    run_dir = full_run(tmp_path / "run", 0.4, 0.8)
    config = OmegaConf.load(run_dir / ".hydra/config.yaml")
    assert swept_value(config, "agent.hidden_dims", run_dir) == "[32, 32]"
    with pytest.raises(ValueError, match="--by agent.lr: expected that key in every run's config"):
        swept_value(config, "agent.lr", run_dir)


def test_expected_runs_counts_the_sweep_product(tmp_path):
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task: [agent=qc_fql, 'agent.chunk_length=1,5,10', 'seed=range(0,3)']\n"
    )
    assert expected_runs(tmp_path) == 9
    (tmp_path / "multirun.yaml").write_text(  # a preset's sweep: the sweeper's params, then the command line
        "hydra:\n  sweeper:\n    params:\n      agent: qc,qc_fql,rlpd\n  overrides:\n    task: ['seed=0,1']\n"
    )
    assert expected_runs(tmp_path) == 6
    for methods, count in (("qam", 1), ("qam,fql", 2)):  # the command line's key replaces the preset's
        (tmp_path / "multirun.yaml").write_text(
            "hydra:\n  sweeper:\n    params:\n      qam_method: qam,qam_e,qam_f,fql\n"
            f"  overrides:\n    task: ['qam_method={methods}', 'seed=[0,1]']\n"
        )
        assert expected_runs(tmp_path) == count
    (tmp_path / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: ['agent=glob(*)']\n")
    assert expected_runs(tmp_path) is None
    assert expected_runs(tmp_path / "elsewhere") is None


def test_members_of_a_vector_of_runs_are_the_runs(tmp_path, monkeypatch):
    single = vector_run(tmp_path / "single", "qc_fql", [(2, 0), (2, 1), (2, 2)], missing=[(2, 2)])
    assert [run.name for _, job, run in find_runs([single]) if job == single] == [
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
