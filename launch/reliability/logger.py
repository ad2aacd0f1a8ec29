"""The one place metrics leave the process: a local metrics.jsonl (always; its format: metrics.py) and W&B
(unless disabled)."""

from __future__ import annotations

import math
import os
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np

from launch.reliability.disk import write_failed
from launch.reliability.metrics import METRICS_FILE, line_of


def _plain(value: Any) -> Any:
    """JSON-ready scalar (NaN and inf become null, so the file stays valid JSON)."""
    value = np.asarray(value).item() if not isinstance(value, str) else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Logger:
    """Writes rows {step, phase, time, metric...} to metrics.jsonl and the same metrics to W&B.

    `elapsed_offset` carries the wall time of earlier sessions of a resumed run, so `time` is the run's
    total training time, comparable across runs (the x-axis of `launch/plot.py --x time`). Each Logger owns
    its W&B run (`reinit="create_new"`), so the members of a vector, logging in one process, are one W&B run
    each; the id kept in `wandb_id.txt` makes a resumed run continue its own.
    """

    def __init__(
        self, run_dir: Path, config: dict, logger_cfg: Any, tags: list[str], elapsed_offset: float = 0.0
    ):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / METRICS_FILE
        self.start = time.perf_counter() - elapsed_offset
        self.wandb_run = None
        if logger_cfg.mode != "disabled":
            # wandb takes the `agents` package for the LLM library of that name and advertises Weave at init.
            os.environ.setdefault("WANDB_DISABLE_WEAVE", "true")
            import wandb

            id_file = self.run_dir / "wandb_id.txt"
            run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(8)
            id_file.write_text(run_id)
            self.wandb_run = wandb.init(
                project=logger_cfg.project,
                entity=logger_cfg.entity,
                group=logger_cfg.group,
                name=self.run_dir.name,
                tags=tags,
                config=config,
                dir=str(self.run_dir),
                mode=logger_cfg.mode,
                id=run_id,
                resume="allow",
                reinit="create_new",
            )

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def log(self, metrics: dict[str, Any], step: int, phase: str) -> None:
        row = {"step": int(step), "phase": phase, "time": round(self.elapsed, 3)}
        row.update({key: _plain(value) for key, value in metrics.items()})
        try:
            with self.metrics_path.open("a") as file:
                file.write(line_of(row))
        except OSError as error:
            raise write_failed(self.run_dir, METRICS_FILE, error) from error
        if self.wandb_run is not None:
            self.wandb_run.log({**metrics, "time/elapsed": row["time"]}, step=int(step))

    def log_video(self, key: str, frames: np.ndarray, step: int, fps: int = 30) -> None:
        """frames: (time, height, width, 3) uint8."""
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log(
                {key: wandb.Video(frames.transpose(0, 3, 1, 2), fps=fps, format="mp4")}, step=step
            )

    def close(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
