"""launch/benchmark.py runs and reports what it claims to measure (a smoke test at tiny sizes, not timed)."""

import json
import sys

from launch import benchmark


def test_run_map_benchmark_reports_both_maps_for_both_counts(monkeypatch, capsys):
    argv = ["benchmark.py", "--run-map", "--runs", "1,2", "--dispatch", "2", "--repeats", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "agent.hidden_dims=[8]", "batch_size=8"])
    benchmark.main()
    (report,) = json.loads(capsys.readouterr().out)["run_maps"]  # R = 1 has no map to choose
    assert report["runs"] == 2
    rates = report["updates_per_s_aggregate"]
    assert sorted(rates) == [
        "map, per run count",
        "map, shared count",
        "vmap, per run count",
        "vmap, shared count",
    ]
    assert all(rate > 0 for rate in rates.values())


def test_sweep_benchmark_reports_both_vectors_and_their_ratio(monkeypatch, capsys):
    argv = ["benchmark.py", "--sweep", "alpha=1,10", "--dispatch", "2", "--repeats", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "agent.hidden_dims=[8]", "batch_size=8"])
    benchmark.main()
    report = json.loads(capsys.readouterr().out)["qc_fql"]
    seeds, swept = report["seed_vector"], report["sweep_vector"]
    assert (seeds["vector"], swept["vector"]) == ("seeds", "alpha=[1.0, 10.0]")
    assert seeds["runs"] == swept["runs"] == 2
    expected = swept["updates_per_s_aggregate"] / seeds["updates_per_s_aggregate"]
    assert abs(report["ratio"] - expected) < 1e-3


def test_single_run_report_reads_its_rate_against_the_matmul_ceiling(monkeypatch, capsys):
    argv = ["benchmark.py", "--runs", "1", "--dispatch", "2", "--repeats", "1", "--online-steps", "0"]
    argv += ["--sampling-transitions", "1000", "agent.hidden_dims=[8]", "batch_size=8"]
    monkeypatch.setattr(sys, "argv", argv)
    benchmark.main()
    report = json.loads(capsys.readouterr().out)
    (single,) = report["agents"]
    assert single["runs"] == 1 and single["updates_per_s_aggregate"] == single["updates_per_s_per_run"]
    rate = single["gflop_per_update"] * single["updates_per_s_per_run"]
    assert abs(single["gflop_per_s"] - rate) <= 0.05 + 1e-3 * rate
    assert single["matmul_gflop_per_s"] > 0 and single["action_selection_ms"] > 0
    assert "peak_device_bytes" in report
