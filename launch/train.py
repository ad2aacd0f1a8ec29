"""Offline-to-online training of one run or a vector of runs (the protocol: launch/engine/protocol.py).

python launch/train.py agent=qc_fql env=cube
python launch/train.py agent=qc_fql env=cube seed=[0,1,2,3] env.task=[1,2,3,4,5]   # 20 runs, one process
python launch/train.py agent=qc_fql env=cube 'agent.alpha=[30,100,300]' 'seed=[0,1,2,3]'   # 12 runs
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import preemption
from launch.engine import settings
from launch.engine.protocol import run_protocol
from launch.engine.run import Run
from launch.engine.vector import vector_members
from launch.reliability import lock
from launch.reliability.metrics import METRICS_FILE

log = logging.getLogger(__name__)


def train(cfg: DictConfig, run_dir: Path) -> Run:
    """Run the whole protocol (or what is left of it after a resume) in `run_dir`."""
    for member in vector_members(cfg, run_dir):
        settings.validate(member.cfg)
    with lock.held(run_dir), preemption.handling():
        run = Run(cfg, run_dir)
        try:
            run.start()
            if run.finished:
                log.info(
                    "%s: the run is complete (step %d); nothing to do, nothing written (a larger "
                    "online_steps extends it)",
                    run_dir,
                    run.global_step,
                )
                return run
            run_protocol(run)
        finally:
            run.close()
    for member, counters in zip(run.members, run.counters.runs, strict=True):
        log.info(
            "done: offline success %s | online success %s | metrics %s",
            counters.success.get("offline", "n/a"),
            counters.success.get("online", "n/a"),
            member.run_dir / METRICS_FILE,
        )
    log.info("wall %.0f s | checkpoints %s", run.loggers[0].elapsed, run.checkpointer.directory)
    return run


@hydra.main(config_path="../configs", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    if cfg.logger.group is None and hydra_cfg.mode == RunMode.MULTIRUN:
        cfg.logger.group = Path(hydra_cfg.sweep.dir).name  # every run of a sweep shares one W&B group
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        train(cfg, run_dir)
    except preemption.Interrupted as interrupted:
        if interrupted.step is None:  # before the loop (generating its dataset); it says what was kept
            log.warning("%s", interrupted)
        else:
            log.warning("%s: checkpoint saved in %s (resume=true continues from it)", interrupted, run_dir)
        preemption.hand_over(interrupted.signum)
        raise SystemExit(preemption.INTERRUPTED_EXIT_CODE) from None


if __name__ == "__main__":
    main()
