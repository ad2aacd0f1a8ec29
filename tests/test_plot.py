"""launch/plot.py on hand-built sweeps with known answers, and a real tiny multirun."""

import subprocess
import sys
from pathlib import Path

import pytest

from launch import plot
from tests import wandb_records
from tests.test_runs import full_run, write_run

REPO = Path(__file__).resolve().parents[1]


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
    assert report.splitlines()[0] == f"## fql, qc_fql on {env}"
    assert "| fql | 1 | 0.300 [0.300, 0.300] (1) | 0.500 [0.500, 0.500] (1) |" in report
    assert "| qc_fql | 1 | 0.500 [0.500, 0.500] (1) | 0.900 [0.900, 0.900] (1) |" in report
    assert f"- {tmp_path / 'qc'}: 3 jobs launched, 1 run dirs (the rest never started)" in report


def test_plot_refuses_a_dir_without_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run"):
        plot.main([str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="expected a sweep or run dir"):
        plot.main([str(tmp_path / "absent")])


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
