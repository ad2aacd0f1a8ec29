"""launch/analysis/curves.py: bootstrap bands, alignment and averages of runs' curves, with known answers."""

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from launch.analysis import curves
from launch.analysis.curves import align, bootstrap_ci, boundaries_of, summarize
from launch.analysis.runs import RunCurve


def curve(x, y, value=1) -> RunCurve:
    return RunCurve(value, np.array(x, float), np.array(y, float), {}, 100, 100.0)


def test_bootstrap_of_identical_seeds_has_zero_width():
    low, high = bootstrap_ci(np.full(5, 0.3), np.random.default_rng(0))
    assert low == pytest.approx(0.3) and high == pytest.approx(0.3)


def test_bootstrap_of_two_seeds_spans_them():
    # Resampled means of {0.2, 0.6} are 0.2, 0.4, 0.6 with probability 1/4, 1/2, 1/4: the 2.5% and 97.5%
    # quantiles are the two values themselves.
    assert bootstrap_ci(np.array([0.2, 0.6]), np.random.default_rng(0)) == pytest.approx((0.2, 0.6))


def test_bootstrap_matches_the_normal_interval_for_many_seeds():
    values = np.random.default_rng(1).uniform(size=400)
    low, high = bootstrap_ci(values, np.random.default_rng(2), resamples=20000)
    half_width = 1.959964 * values.std() / np.sqrt(len(values))
    assert (low + high) / 2 == pytest.approx(values.mean(), abs=0.1 * half_width)
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.05)


def test_align_interpolates_inside_each_run_and_never_extrapolates():
    early = curve([0, 100, 200], [0.0, 0.5, 1.0])
    crashed = curve([0, 50, 150], [0.2, 0.4, 0.8])
    grid, values = align([early, crashed])
    np.testing.assert_array_equal(grid, [0, 50, 100, 150, 200])
    np.testing.assert_allclose(values, [[0.0, 0.25, 0.5, 0.75, 1.0], [0.2, 0.4, 0.6, 0.8, np.nan]])


def test_summarize_averages_the_runs_present_at_each_step():
    grid = np.array([0.0, 1.0, 2.0])
    values = np.array([[0.2, 0.4, np.nan], [0.6, 0.4, np.nan], [np.nan, 0.4, 1.0]])
    summary = summarize(grid, values, np.random.default_rng(0))
    np.testing.assert_allclose(summary.mean, [0.4, 0.4, 1.0])
    np.testing.assert_array_equal(summary.n, [2, 3, 1])
    np.testing.assert_allclose(summary.low, [0.2, 0.4, 1.0])
    np.testing.assert_allclose(summary.high, [0.6, 0.4, 1.0])


def test_boundary_is_offline_steps_or_the_mean_time_runs_reached_it():
    runs = [
        RunCurve(1, np.zeros(2), np.zeros(2), {}, steps, end)
        for steps, end in [(100, 10.0), (100, 14.0), (100, None), (200, 30.0), (0, 0.0)]
    ]
    assert boundaries_of(runs, "step") == [100.0, 200.0]
    assert boundaries_of(runs, "time") == [pytest.approx(18.0)]
    assert boundaries_of(runs[4:], "time") == []


def drawn_figure(monkeypatch) -> list:
    """Patches curves.plot to keep the figures main() draws."""
    figures, draw = [], curves.plot

    def keep(*args, **kwargs):
        figures.append(draw(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(curves, "plot", keep)
    return figures


@pytest.mark.parametrize(("methods", "beside"), [(3, False), (12, True)])
def test_a_legend_of_many_methods_stands_beside_the_curves(methods, beside):
    x = np.array([0.0, 1.0])
    summary = curves.Summary(x, x, x, x, np.array([2, 2]))
    figure = curves.plot(
        {f"m{i}": summary for i in range(methods)},
        dict.fromkeys((f"m{i}" for i in range(methods)), 2),
        {f"m{i}": [1.0] for i in range(methods)},
        "agent.name",
        "eval/success",
        "step",
        "many methods",
    )
    FigureCanvasAgg(figure).draw()
    legend, axes = figure.axes[0].get_legend(), figure.axes[0]
    outside = legend.get_window_extent().x0 >= axes.get_window_extent().x1
    assert outside == beside
