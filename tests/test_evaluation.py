"""Evaluation spread over eval.workers env processes per run (launch/engine/evaluation.py): the metrics of a
serial evaluation, whatever the number of workers."""

import json
from pathlib import Path

import flax.struct
import jax
import numpy as np
import pytest
from omegaconf import OmegaConf

import envs
from launch import train as train_module
from launch.engine import settings
from launch.engine.evaluation import evaluate_runs
from tests.helpers import compose_config, env_cfg
from tests.test_sequences import rows, tiny_run_config
from tests.test_vector import untimed

TINY = [
    "agent.hidden_dims=[16,16]",
    "batch_size=16",
    "offline_steps=10",
    "online_steps=0",
    "eval_interval=10",
    "eval_episodes=3",
    "log_interval=5",
    "save_interval=10",
    "updates_per_dispatch=5",
    "env.max_episode_steps=8",
    "buffer_size=2000",
    "eval.execution_lengths=[1]",
]


def evaluations(dataset_dir, run_dir: Path, seeds: str, workers: int) -> list[dict]:
    cfg = compose_config(
        "agent=qc_fql",
        "env=pointmaze",
        f"env.dataset_dir={dataset_dir}",
        "env.download=false",
        "logger.mode=disabled",
        f"seed={seeds}",
        f"eval.workers={workers}",
        *TINY,
    )
    train_module.train(cfg, run_dir)
    member_dirs = sorted(run_dir.glob("seed=*")) or [run_dir]
    return [
        {key: value for key, value in json.loads(line).items() if key.startswith("eval/")}
        for member_dir in member_dirs
        for line in (member_dir / "metrics.jsonl").read_text().splitlines()
        if "eval/success" in line
    ]


@pytest.mark.parametrize("seeds", ["0", "[0,1]"])
def test_two_workers_give_the_serial_metrics_exactly(tiny_dataset_dir, tmp_path, seeds):
    serial = evaluations(tiny_dataset_dir, tmp_path / "serial", seeds, 1)
    assert serial and all("eval/success@execution_length=1" in row for row in serial)
    assert evaluations(tiny_dataset_dir, tmp_path / "parallel", seeds, 2) == serial


def test_default_workers_share_the_cores_among_the_runs_at_most_the_episodes(monkeypatch):
    monkeypatch.setattr(settings.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert settings.eval_workers(compose_config("eval_episodes=10")) == 4
    assert settings.eval_workers(compose_config("eval_episodes=3")) == 3
    assert settings.eval_workers(compose_config("eval_episodes=10", "eval.workers=2")) == 2
    assert settings.eval_workers(compose_config("eval_episodes=10"), runs=2) == 2
    assert settings.eval_workers(compose_config("eval_episodes=10"), runs=8) == 1
    with pytest.raises(ValueError, match=r"eval.workers=0: expected null"):
        train_module.train(compose_config("eval.workers=0"), Path("/nonexistent-run-dir"))


class RandomChunks(flax.struct.PyTreeNode):
    """A stand-in open-loop agent: a chunk of 5 actions drawn from each query's key."""

    def sample_actions(self, observations, key):
        return jax.random.uniform(key, (len(observations), 5, 2), minval=-1.0, maxval=1.0)


def test_videos_are_the_serial_frames_with_two_workers():
    cfg = dict(OmegaConf.to_container(env_cfg("pointmaze", max_episode_steps=6), resolve=True))
    results = {}
    for workers in (1, 2):
        vector_env = envs.make_vector_env([cfg] * (2 * workers), videos=True)
        try:
            results[workers] = evaluate_runs(
                RandomChunks(), vector_env, [0, 1], 3, [0, 2], execution_length=3, video_episodes=2
            )
        finally:
            vector_env.close()
    (serial, serial_videos), (parallel, parallel_videos) = results[1], results[2]
    assert parallel == serial
    assert [len(videos) for videos in serial_videos] == [2, 2]
    for serial_run, parallel_run in zip(serial_videos, parallel_videos, strict=True):
        for serial_clip, parallel_clip in zip(serial_run, parallel_run, strict=True):
            assert serial_clip.shape[0] == 6
            np.testing.assert_array_equal(parallel_clip, serial_clip)


def test_radt_target_sweep_with_two_workers_gives_the_serial_metrics(tiny_dataset_dir, tmp_path):
    """RADT evaluates (and sweeps its targets) in its own env per run: eval.workers leaves its numbers."""
    results = {}
    for workers in (1, 2):
        cfg = tiny_run_config(
            tiny_dataset_dir, "radt", "online_steps=0", "eval_episodes=2", f"eval.workers={workers}"
        )
        train_module.train(cfg, tmp_path / str(workers))
        results[workers] = untimed(rows(tmp_path / str(workers)))
    assert any("eval/return_alignment_error" in row for row in results[1])
    assert results[2] == results[1]
