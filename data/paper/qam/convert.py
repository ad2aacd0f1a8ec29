"""Converts the QAM authors' per-seed results (exp_data/qam-exp-data.pkl of ColinQiyangLi/qam) into
qam-results.csv.gz, so that the project reads a plain, diffable table and never unpickles a foreign file.

    python data/paper/qam/convert.py PATH/TO/qam-exp-data.pkl data/paper/qam/qam-results.csv.gz

The pickle is a dict {(key, method): array (steps, 12 seeds)}: key is an OGBench single-task env name
(`cube-triple-play-singletask-task2-v0`), a domain (`cube-triple-play`, `antmaze-large-navigate`) or `all`;
row i is the success rate after (i + 1) x 50K steps (30 rows: 1M offline updates then 500K environment
steps; RLPD, online only: 10 rows of environment steps). Each row of the CSV is one (key, method, step) with
the 12 seeds' values unchanged.
"""

import csv
import gzip
import io
import pickle
import sys
from pathlib import Path

OFFLINE_MILLIONS = 1.0  # the offline phase's length on the paper's x; online steps are 1 + env steps
STEP_MILLIONS = 0.05  # one row of an array
NUM_SEEDS = 12
ONLINE_ONLY = {"RLPD": 10}  # rows of a method run online only (the authors' reproduce_rlpd.py)
OFFLINE_TO_ONLINE_ROWS = 30  # 1M offline updates + 500K environment steps


def benchmark_and_task(key: str) -> tuple[str, str]:
    """('ogbench', '<domain>-<type>-task<N>') for a task, ('ogbench-aggregate', '<domain>' or 'all')."""
    if key == "all":
        return "ogbench-aggregate", "all"
    if "-singletask-" in key:
        dataset, task = key.removesuffix("-v0").split("-singletask-")
        return "ogbench", f"{dataset}-{task}"
    return "ogbench-aggregate", key.rsplit("-", 1)[0]


def rows(results: dict) -> list[list]:
    out = []
    for (key, method), values in sorted(results.items()):
        expected = (ONLINE_ONLY.get(method, OFFLINE_TO_ONLINE_ROWS), NUM_SEEDS)
        if values.shape != expected:
            raise ValueError(f"{key}, {method}: expected an array of shape {expected}, found {values.shape}")
        start = OFFLINE_MILLIONS if method in ONLINE_ONLY else 0.0  # online only: x starts after offline
        for index, seeds in enumerate(values):
            step = round(start + (index + 1) * STEP_MILLIONS, 2)
            out.append([*benchmark_and_task(key), method, step, *(f"{value:.6g}" for value in seeds)])
    return out


def main(source: str, target: str) -> None:
    with open(source, "rb") as file:
        results = pickle.load(file)  # the authors' file, read once here, never by the project's code
    header = ["benchmark", "task", "method", "step_millions", *(f"seed_{i}" for i in range(NUM_SEEDS))]
    # no name, mtime 0 in the gzip header: the same pickle always gives the same bytes (a reproducible sha256)
    with (
        Path(target).open("wb") as out,
        gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as raw,
        io.TextIOWrapper(raw, newline="") as file,
    ):
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
