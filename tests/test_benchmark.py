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
