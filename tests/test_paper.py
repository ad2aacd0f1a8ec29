"""launch/analysis/paper.py: the paper's task of an env name, and its steps on a run's budget."""

import numpy as np
import pytest

from launch.analysis import paper

CUBE2 = "cube-double-play-singletask-task2-v0"


@pytest.mark.parametrize(
    "env, expected",
    [
        (CUBE2, ("ogbench", "cube-double-play-task2")),
        ("puzzle-3x3-play-singletask-task5-v0", ("ogbench", "puzzle-3x3-play-task5")),
        ("cube-quadruple-play-100m-singletask-task1-v0", ("ogbench", "cube-quadruple-play-task1")),
        ("puzzle-4x4-play-100m-singletask-task3-v0", ("ogbench", "puzzle-4x4-play-task3")),
        ("humanoidmaze-large-navigate-singletask-task5-v0", ("ogbench", "humanoidmaze-large-navigate-task5")),
        ("lift-mh-low_dim", ("robomimic", "lift")),
        ("robomimic-square-mh-low_dim", ("robomimic", "square")),
        ("cube-double-noisy-singletask-task2-v0", None),
        ("pointmaze-medium-navigate-singletask-task1-v0", None),
    ],
)
def test_paper_task_of_an_env_name(env, expected):
    assert paper.paper_task(env) == expected


def test_paper_steps_map_onto_the_run_budget():
    steps = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    np.testing.assert_allclose(paper.to_run_steps(steps, 1_000_000, 1_000_000), steps * 1e6)
    np.testing.assert_allclose(paper.to_run_steps(steps, 100, 300), [0, 50, 100, 250, 400])
    np.testing.assert_allclose(paper.to_run_steps(steps[2:], 0, 300), [0, 150, 300])  # online only
