"""Resolve, download or generate the offline dataset of an env config, ahead of training.

    python launch/make_dataset.py env=cube_triple env.generate.num_episodes=20 env.generate.workers=2
    python launch/make_dataset.py env=cube_quadruple_100m env.generate.num_shards=10   # a sharded set

Prints the train file's path, where it came from, its steps and, when generated, the steps/s measured; for a
sharded set (env.dataset_size set), the directory, the shards written and kept, and the steps/s.
A dataset is not a run, so Hydra is told (before any user override) to make no run directory or log file.
SIGINT, SIGTERM, SIGUSR1 or SIGUSR2 stop a generation at its next safe point, with one line saying what was
kept, and exit code 75 (preemption/__init__.py).
"""

import logging
import sys

import hydra
from omegaconf import DictConfig

import agents  # noqa: F401  registers each Config's defaults: the config composes its agent group
import envs
import preemption
from envs import shards

log = logging.getLogger(__name__)

_NO_RUN_DIRECTORY = ["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=stdout"]


@hydra.main(config_path="../configs", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    try:
        with preemption.handling():
            make(cfg)
    except preemption.Interrupted as interrupted:
        log.warning("%s", interrupted)
        raise SystemExit(preemption.INTERRUPTED_EXIT_CODE) from None


def make(cfg: DictConfig) -> None:
    if cfg.env.dataset_size is not None:
        make_shards(cfg)
        return
    resolved = envs.locate_dataset(cfg.env, cfg.seed)
    counts = envs.validate_dataset(resolved.path, envs.make_offline_env(cfg.env), cfg.env.name)
    print(f"path: {resolved.path}")
    print(f"source: {resolved.source}")
    print(
        f"steps: {counts['train_steps']} in {counts['train_episodes']} episodes "
        f"(validation: {counts['val_steps']} in {counts['val_episodes']})"
    )
    if resolved.generation is not None:
        generation = resolved.generation
        print(
            f"steps/s: {generation['steps_per_second']:.0f} ({generation['steps']} steps with validation, "
            f"in {generation['seconds']:.1f} s, workers={generation['workers']})"
        )


def make_shards(cfg: DictConfig) -> None:
    result = shards.generate_shards(cfg.env, cfg.seed)
    print(f"directory: {result['directory']}")
    written, kept = len(result["written"]), len(result["kept"])
    print(f"shards: {result['shards']} ({written} written, {kept} already complete)")
    print(f"steps per shard: {result['steps_per_shard']} in {result['episodes_per_shard']} episodes")
    if result["steps_per_second"] is not None:
        print(f"steps/s: {result['steps_per_second']:.0f} (workers={result['workers']})")


if __name__ == "__main__":
    sys.argv[1:1] = _NO_RUN_DIRECTORY
    main()
