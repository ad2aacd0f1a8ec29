"""The QAM authors' per-seed results (data/paper/qam/qam-results.csv.gz: Li & Levine, *Q-learning with Adjoint
Matching*, ICLR 2026), as paper curves: the 12-seed mean with a 95% bootstrap band at every 50K steps.

Their protocol's budget is 1M offline updates then 500K environment steps, so on the paper's x (millions of
steps) offline is [0, 1] and online (1, 1.5]; RLPD, online only, has points in (1, 1.5] only.

A domain's entry (`ogbench-aggregate`) has a seed-mean equal to the mean of its 5 tasks', but its seed
columns are not the task columns averaged (the seeds are not aligned across entries): compare means and
intervals, never one seed column with another entry's.
"""

from __future__ import annotations

import csv
import functools
import gzip
from pathlib import Path

import numpy as np

from launch.analysis.paper import PaperCurve

RESULTS_CSV = Path(__file__).resolve().parents[2] / "data" / "paper" / "qam" / "qam-results.csv.gz"
BUDGET = (1_000_000, 500_000)  # offline updates, online environment steps
SOURCE = "QAM"
RESAMPLES = 2000  # bootstrap resamples of the 12 seeds; a fixed generator makes the band reproducible
_CHUNK = 1024  # rows resampled at once: (chunk, resamples) floats in memory


def load_seeds(path: Path = RESULTS_CSV) -> dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]]:
    """(step_millions (num_points,), success (num_points, num_seeds)) keyed by (benchmark, task, method)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"expected the QAM authors' per-seed results at {path} (data/paper/qam/ of the repository: run "
            "from a clone or an editable install), found no file"
        )
    rows: dict[tuple[str, str, str], list[list[float]]] = {}
    with gzip.open(path, "rt", newline="") as file:
        reader = csv.reader(file)
        header = next(reader)
        for row in reader:
            rows.setdefault(tuple(row[:3]), []).append([float(value) for value in row[3:]])
    if header[:4] != ["benchmark", "task", "method", "step_millions"]:
        raise ValueError(
            f"{path}: expected columns benchmark, task, method, step_millions, seed_*; found {header}"
        )
    seeds = {}
    for key, points in rows.items():
        table = np.array(sorted(points))
        seeds[key] = table[:, 0], table[:, 1:]
    return seeds


def bootstrap_band(values: np.ndarray, rng: np.random.Generator, resamples: int) -> tuple[np.ndarray, ...]:
    """(mean, 2.5% and 97.5% quantiles of the resampled means) of each row over its seeds.

    values: (rows, num_seeds). Every row is resampled with the same draws, as multinomial weights.
    """
    num_seeds = values.shape[1]
    weights = rng.multinomial(num_seeds, np.full(num_seeds, 1 / num_seeds), size=resamples) / num_seeds
    low, high = [], []
    for start in range(0, len(values), _CHUNK):
        means = values[start : start + _CHUNK] @ weights.T  # (chunk, resamples)
        quantiles = np.quantile(means, [0.025, 0.975], axis=1)
        low.append(quantiles[0])
        high.append(quantiles[1])
    return values.mean(axis=1), np.concatenate(low), np.concatenate(high)


@functools.cache
def load_curves(path: Path = RESULTS_CSV, seed: int = 0) -> dict[tuple[str, str, str], PaperCurve]:
    """Every entry as a PaperCurve of source QAM and budget BUDGET, keyed by (benchmark, task, method)."""
    seeds = load_seeds(path)
    steps = np.concatenate([step for step, _ in seeds.values()])
    mean, low, high = bootstrap_band(
        np.concatenate([values for _, values in seeds.values()]), np.random.default_rng(seed), RESAMPLES
    )
    curves, start = {}, 0
    for key, (step, _) in seeds.items():
        end = start + len(step)
        curves[key] = PaperCurve(
            *key, steps[start:end], mean[start:end], low[start:end], high[start:end], SOURCE, BUDGET
        )
        start = end
    return curves
