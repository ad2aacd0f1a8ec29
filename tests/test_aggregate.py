"""launch/analysis/aggregate.py (rliable's statistics) against slow, obvious NumPy computations on hand-made
scores."""

import itertools
import statistics

import numpy as np
import pytest
from rliable import library, metrics

from launch.analysis import aggregate


def slow_iqm(scores: np.ndarray) -> float:
    """The mean of the middle half of all runs x tasks: a quarter (rounded down) cut from each end."""
    ordered = sorted(scores.ravel())
    cut = len(ordered) // 4
    middle = ordered[cut : len(ordered) - cut]
    return sum(middle) / len(middle)


def slow_task_means(scores: np.ndarray) -> list[float]:
    return [sum(scores[:, task]) / scores.shape[0] for task in range(scores.shape[1])]


def slow_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) per task over every pair of runs, ties counting half, averaged over tasks."""
    per_task = []
    for task in range(x.shape[1]):
        wins = [1.0 if a > b else 0.5 if a == b else 0.0 for a in x[:, task] for b in y[:, task]]
        per_task.append(sum(wins) / len(wins))
    return sum(per_task) / len(per_task)


def slow_stratified_interval(scores: np.ndarray, seed: int, resamples: int) -> tuple[float, float]:
    """Percentile interval of the mean: runs resampled with replacement within each task, one at a time."""
    rng = np.random.default_rng(seed)
    num_runs, num_tasks = scores.shape
    means = []
    for _ in range(resamples):
        resampled = [
            [scores[rng.integers(num_runs), task] for _ in range(num_runs)] for task in range(num_tasks)
        ]
        means.append(np.mean(resampled))
    return tuple(np.percentile(means, [2.5, 97.5]))


SCORES = np.array(  # 4 runs x 3 tasks
    [
        [0.9, 0.1, 0.5],
        [0.7, 0.0, 0.6],
        [1.0, 0.3, 0.2],
        [0.8, 0.2, 0.4],
    ]
)


ODD = np.array(
    [[0.3, 0.9], [0.1, 0.8], [0.5, 0.4], [0.0, 1.0], [0.2, 0.6]]
)  # 5 runs x 2 tasks: 2 cut per end


@pytest.mark.parametrize("scores", [SCORES, ODD])
def test_aggregates_of_known_scores(scores):
    result = aggregate.aggregates(scores, np.random.default_rng(0), resamples=200)
    assert result["IQM"][0] == pytest.approx(slow_iqm(scores))
    task_means = slow_task_means(scores)
    assert result["mean"][0] == pytest.approx(sum(task_means) / len(task_means))
    assert result["median"][0] == pytest.approx(statistics.median(task_means))
    gap = 1 - sum(min(score, 1.0) for score in scores.ravel()) / scores.size
    assert result["optimality gap"][0] == pytest.approx(gap)
    for value, low, high in result.values():
        assert low <= value <= high


def test_iqm_of_twelve_scores_is_the_mean_of_the_middle_six():
    # Sorted: 0.0 0.1 0.2 | 0.2 0.3 0.4 0.5 0.6 0.7 | 0.8 0.9 1.0
    assert slow_iqm(SCORES) == pytest.approx(0.45)
    assert aggregate.aggregates(SCORES, np.random.default_rng(0), 100)["IQM"][0] == pytest.approx(0.45)


def test_seeded_bootstrap_is_reproducible_and_matches_a_slow_stratified_bootstrap():
    mean = lambda scores: np.array([metrics.aggregate_mean(scores)])  # noqa: E731
    first = aggregate.interval(SCORES, mean, np.random.default_rng(7), 4000)
    again = aggregate.interval(SCORES, mean, np.random.default_rng(7), 4000)
    other = aggregate.interval(SCORES, mean, np.random.default_rng(8), 4000)
    assert [float(part[0]) for part in first] == [float(part[0]) for part in again]
    assert float(first[1][0]) != float(other[1][0])
    state = np.random.get_state()[1].copy()
    aggregate.interval(SCORES, mean, np.random.default_rng(7), 10)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # the global RNG is left as it was
    low, high = slow_stratified_interval(SCORES, seed=0, resamples=4000)
    assert float(first[1][0]) == pytest.approx(low, abs=0.01)
    assert float(first[2][0]) == pytest.approx(high, abs=0.01)


def test_stratified_bootstrap_interval_covers_the_true_mean_95_percent_of_the_time():
    # 10 runs x 3 tasks from Beta(2, 5) (mean 2/7) per task; 300 seeded experiments.
    rng = np.random.default_rng(0)
    mean = lambda scores: np.array([metrics.aggregate_mean(scores)])  # noqa: E731
    covered = []
    for _ in range(300):
        scores = rng.beta(2, 5, size=(10, 3))
        _, low, high = aggregate.interval(scores, mean, rng, 300)
        covered.append(low[0] <= 2 / 7 <= high[0])
    assert np.mean(covered) == pytest.approx(0.95, abs=0.04)


def test_probability_of_improvement_matches_rliable_and_the_pair_count():
    rng = np.random.default_rng(3)
    for x, y in [
        (SCORES, SCORES),
        (SCORES, SCORES[:3] * 0.5),
        (np.round(rng.uniform(size=(5, 2)), 1), np.round(rng.uniform(size=(3, 2)), 1)),  # ties
    ]:
        expected = slow_improvement(x, y)
        assert aggregate.probability_of_improvement(x, y) == pytest.approx(expected)
        assert metrics.probability_of_improvement(x, y) == pytest.approx(expected)
    value, low, high = aggregate.improvement(SCORES, SCORES * 0.5, np.random.default_rng(0), 200)
    assert value == pytest.approx(slow_improvement(SCORES, SCORES * 0.5)) and low <= value <= high


def test_profile_is_the_fraction_of_runs_above_each_threshold():
    fraction, low, high = aggregate.profile(SCORES, np.random.default_rng(0), 200)
    for tau, value in zip(aggregate.PROFILE_TAUS, fraction, strict=True):
        assert value == pytest.approx(sum(score > tau for score in SCORES.ravel()) / SCORES.size)
    np.testing.assert_allclose(
        aggregate.score_distribution(SCORES, aggregate.PROFILE_TAUS),
        library.score_distributions(SCORES, aggregate.PROFILE_TAUS),
    )
    assert (low <= fraction + 1e-12).all() and (fraction <= high + 1e-12).all()


def test_curves_are_iqm_and_mean_per_point():
    scores = np.stack([SCORES, SCORES * 0.5, np.ones_like(SCORES)], axis=-1)  # 3 points
    result = aggregate.curves(scores, np.random.default_rng(0), 200)
    for point in range(3):
        assert result["IQM"][0][point] == pytest.approx(slow_iqm(scores[..., point]))
        assert result["mean"][0][point] == pytest.approx(np.mean(slow_task_means(scores[..., point])))
    np.testing.assert_allclose(result["IQM"][1][2], 1.0)  # every run at 1: a zero-width band
    np.testing.assert_allclose(result["IQM"][2][2], 1.0)
    assert all(len(part) == 3 for name in result for part in result[name])


def test_every_ordered_pair_has_a_figure_row():
    pairs = {pair: (0.5, 0.4, 0.6) for pair in itertools.permutations(["a", "b", "c"], 2)}
    figure = aggregate.improvement_figure("agent.name", pairs, aggregate.colors_of(["a", "b", "c"]), "online")
    labels = [tick.get_text() for tick in figure.axes[0].get_yticklabels()]
    assert labels == [f"{x} > {y}" for x, y in pairs]
