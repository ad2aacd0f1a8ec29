"""launch/analysis/qam_results.py and yardsticks.py: the QAM authors' per-seed results as paper curves, the
digest of the shipped file, and which source a run is compared with."""

import csv
import gzip

import numpy as np
import pytest

from launch.analysis import paper, qam_results, yardsticks

TRIPLE2 = "cube-triple-play-singletask-task2-v0"


def write_results(path, entries: dict) -> None:
    """A results file in the shipped layout: {(benchmark, task, method): {step_millions: [12 seeds]}}."""
    with gzip.open(path, "wt", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["benchmark", "task", "method", "step_millions", *(f"seed_{i}" for i in range(12))])
        for key, points in entries.items():
            writer.writerows([*key, step, *seeds] for step, seeds in points.items())


def test_a_curve_is_the_seed_mean_with_a_bootstrap_band(tmp_path):
    seeds = np.linspace(0.0, 1.0, 12)
    path = tmp_path / "results.csv.gz"
    write_results(path, {("ogbench", "scene-play-task1", "QAM"): {0.05: [0.5] * 12, 1.5: seeds.tolist()}})
    (curve,) = qam_results.load_curves(path).values()
    assert (curve.source, curve.budget) == ("QAM", qam_results.BUDGET)
    np.testing.assert_allclose(curve.step_millions, [0.05, 1.5])
    np.testing.assert_allclose(curve.mean, [0.5, seeds.mean()])
    np.testing.assert_allclose([curve.low[0], curve.high[0]], 0.5)  # 12 equal seeds: no spread
    resampled = np.random.default_rng(1).choice(seeds, size=(20_000, 12)).mean(axis=1)  # the obvious way
    reference = np.quantile(resampled, [0.025, 0.975])
    np.testing.assert_allclose([curve.low[1], curve.high[1]], reference, atol=0.02)
    assert curve.at(curve.end_of("online")) == (seeds.mean(), curve.low[1], curve.high[1])


def test_the_shipped_digest_means_agree_but_seed_columns_do_not():
    results = qam_results.load_seeds()
    assert len(results) == 17 * 61 and all(values.shape[1] == 12 for _, values in results.values())
    _, rlpd = results[("ogbench", "cube-triple-play-task2", "RLPD")]
    steps, qam = results[("ogbench", "cube-triple-play-task2", "QAM")]
    assert (len(rlpd), len(qam)) == (10, 30) and steps[19] == 1.0 and steps[-1] == 1.5
    aligned = 0
    for method in ("QAM", "FQL", "RLPD"):
        domain = results[("ogbench-aggregate", "cube-triple", method)][1]
        tasks = np.stack([results[("ogbench", f"cube-triple-play-task{n}", method)][1] for n in range(1, 6)])
        np.testing.assert_allclose(domain.mean(axis=1), tasks.mean(axis=(0, 2)), atol=1e-9)
        aligned += np.allclose(domain, tasks.mean(axis=0))
    assert aligned == 0  # a domain's seed column is not its tasks' columns averaged


def test_a_run_is_compared_with_the_source_of_its_budget():
    sources = yardsticks.load_sources()
    assert yardsticks.match_run(sources, "FQL", TRIPLE2, 500_000).source == "QAM"
    assert yardsticks.match_run(sources, "FQL", TRIPLE2, 1_000_000).source == "Q-chunking"
    maze = "antmaze-giant-navigate-singletask-task3-v0"  # only QAM has it, whatever the budget
    assert yardsticks.match_run(sources, "FQL", maze, 1_000_000).task == "antmaze-giant-navigate-task3"
    assert yardsticks.match_run(sources, "QC", maze, 500_000) is None


def test_qam_steps_map_onto_the_run_budget():
    steps = np.array([0.5, 1.0, 1.25, 1.5])
    np.testing.assert_allclose(paper.to_run_steps(steps, 100, 200, qam_results.BUDGET), [50, 100, 200, 300])


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        (["cube-triple"], ("cube-triple", "cube-triple's 5 tasks")),
        (["scene", "puzzle-4x4"], ("all", "all 10 OGBench domains")),
    ],
)
def test_qam_aggregate_covering_runs(members, expected):
    curves = qam_results.load_curves()
    tasks = [curves[("ogbench", f"{domain}-play-task{n}", "QAM")] for domain in members for n in range(1, 6)]
    curve, covers = paper.covering_aggregate(curves, tasks)
    assert curve.task == expected[0] and covers.startswith(expected[1])
