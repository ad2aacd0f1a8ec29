"""Orbax checkpoints of the whole training state, so an interrupted run resumes where it stopped.

The device state (agent with its optimiser and target networks, replay buffer, sampling RNG) is one
pytree; the host counters (phase, steps, episodes, elapsed time) sit beside it as JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"


class Checkpointer:
    def __init__(self, run_dir: Path, keep: int = 2):
        self.directory = (Path(run_dir) / CHECKPOINT_DIR).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=False
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, counters: dict) -> None:
        """Save under `step` (a monotone count of updates plus environment steps)."""
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), counters=ocp.args.JsonSave(counters)),
            force=True,
        )
        self.manager.wait_until_finished()

    def restore(self, template: Any) -> tuple[Any, dict]:
        """The latest checkpoint, restored into the structure (and shardings) of `template`."""
        step = self.manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint to resume from in {self.directory}")
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(template), counters=ocp.args.JsonRestore()
            ),
        )
        return restored.state, dict(restored.counters)

    def close(self) -> None:
        self.manager.close()
