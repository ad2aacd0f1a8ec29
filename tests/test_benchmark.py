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


def test_a_visual_env_is_timed_on_stacked_frames_stored_once(monkeypatch, capsys):
    """env=visual_cube: 20,000 synthetic 64x64x3 uint8 frames, each stored once (a 3-frame stack of the state
    and of the next state, stored, would take 6x), and an impala_small QC-FQL agent updated on them."""
    argv = ["benchmark.py", "--dispatch", "1", "--repeats", "1", "--online-steps", "0"]
    argv += ["--sampling-transitions", "1000", "--frame-transitions", "1000"]
    monkeypatch.setattr(sys, "argv", [*argv, "env=visual_cube", "agent.hidden_dims=[8]", "batch_size=4"])
    benchmark.main()
    report = json.loads(capsys.readouterr().out)
    (visual,) = report["agents"]
    # the visual store's gathers and crop: wall, CPU time and page faults per call, no figure asserted
    cases = ("unstacked", "stacked_every_next", "stacked_last_next")
    cases += ("stacked_last_next_cropped", "stacked_last_next_not_cropped")
    assert list(report["frames"]["per_call"]) == list(cases)
    for figures in report["frames"]["per_call"].values():
        assert set(figures) == {"ms", "cpu_ms", "minor_faults"} and min(figures.values()) >= 0
    assert visual["env"] == "visual-cube-double-play-singletask-task1-v0"
    frame_bytes = 64 * 64 * 3
    assert 20_000 * frame_bytes < visual["device_bytes_replay"] < 1.1 * 20_000 * frame_bytes
    assert visual["updates_per_s_per_run"] > 0 and visual["gflop_per_update"] > 0


def test_update_cost_reports_xla_flops_and_the_traced_convolutions(monkeypatch, capsys):
    """--update-cost compiles and counts without timing: QC's action selection (N behaviour samples of 10
    Euler steps, then N critic scores) costs more than QC-FQL's one-step policy, and state networks trace no
    convolution."""
    argv = ["benchmark.py", "--update-cost", "--agents", "qc_fql,qc"]
    monkeypatch.setattr(sys, "argv", [*argv, "agent.hidden_dims=[8]", "batch_size=8"])
    benchmark.main()
    qc_fql, qc = json.loads(capsys.readouterr().out)["update_cost"]
    assert (qc_fql["agent"], qc["agent"]) == ("qc_fql", "qc")
    assert qc["gflop_per_batch_act"] > qc_fql["gflop_per_batch_act"] > 0
    assert qc_fql["gflop_per_update"] > 0 and qc_fql["update_convolutions"] == qc["update_convolutions"] == 0
