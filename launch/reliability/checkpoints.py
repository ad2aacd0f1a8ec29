"""Orbax checkpoints of the whole training state, so an interrupted run resumes where it stopped.

The device state (agent with its optimiser and target networks, replay buffer, sampling RNG) is one
pytree; the host counters (phase, steps, episodes, elapsed time) and the run's resolved config sit beside it
as JSON. Orbax writes each step into a temporary directory and renames it when complete, so a kill mid-save
leaves the previous steps as they were.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

from launch.reliability.disk import write_failed

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"


class ResumeRefused(Exception):
    """The new config asks for something the checkpoint cannot continue into."""


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


# Orbax globs for the per-process parts of a checkpoint inside its directory: in a path holding a glob
# character class (`seed=[0, 1]`) the glob finds none, and the checkpoint is written but never readable.
GLOB_CHARACTERS = "[]*?"


class Checkpointer:
    def __init__(self, run_dir: Path, keep: int = 2):
        self.directory = (Path(run_dir) / CHECKPOINT_DIR).absolute()
        if any(character in str(self.directory) for character in GLOB_CHARACTERS):
            raise ValueError(
                f"run directory {run_dir}: its checkpoints could be written but not read back, because "
                f"the path holds one of {GLOB_CHARACTERS} (Orbax reads checkpoints with a glob); choose a "
                "hydra.run.dir (or hydra.sweep.subdir) without them"
            )
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=False
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, counters: dict, config: dict) -> None:
        """Save under `step` (a monotone count of updates plus environment steps). A failed write (a full
        disk) stops the run with one line; the earlier steps stay complete."""
        try:
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    counters=ocp.args.JsonSave(counters),
                    config=ocp.args.JsonSave(config),
                ),
                force=True,
            )
            self.manager.wait_until_finished()
        except OSError as error:
            previous = self.latest_step()
            kept = (
                f"; step {previous} is intact (resume=true continues from it)" if previous is not None else ""
            )
            raise write_failed(self.directory, f"checkpoint step {step}", error, kept) from error

    def restore(self, template_for: Callable[[dict, dict], Any]) -> tuple[int, Any, dict]:
        """The latest readable checkpoint: its step, state and counters. The state is restored into the
        structure (and shardings) of `template_for(saved config, saved counters)`, which may refuse to resume.

        A latest step that cannot be read (a torn or missing file) is deleted and the one before it (Orbax
        keeps two) restored instead, with a warning naming both.
        """
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint to resume from in {self.directory}")
        unreadable: list[tuple[int, str]] = []
        for step in steps:
            try:
                saved = self.manager.restore(
                    step,
                    args=ocp.args.Composite(counters=ocp.args.JsonRestore(), config=ocp.args.JsonRestore()),
                )
                counters = dict(saved.counters)
                template = template_for(dict(saved.config), counters)
                state = self.manager.restore(
                    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(template))
                ).state
            except ResumeRefused:
                raise
            except Exception as error:  # whatever Orbax or TensorStore raise for a torn file
                unreadable.append((step, _first_line(error)))
                continue
            for bad, reason in unreadable:
                log.warning(
                    "checkpoint step %d in %s is unreadable (%s): resuming from step %d instead",
                    bad,
                    self.directory,
                    reason,
                    step,
                )
                self.manager.delete(bad)
            return step, state, counters
        reasons = "; ".join(f"step {step}: {reason}" for step, reason in unreadable)
        raise RuntimeError(f"no readable checkpoint in {self.directory} ({reasons})")

    def close(self) -> None:
        self.manager.close()


# What a resumed run may set differently from its checkpoint: where its data and logs go, and its budgets
# (offline_steps and online_steps, which may only grow: check_resumable).
MAY_CHANGE = ("resume", "logger", "env.dataset_dir", "env.download", "eval.video_episodes", "eval.workers")
BUDGETS = ("offline_steps", "online_steps")


def _flat(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resumable(saved: dict, new: dict, counters: dict, offline_pretraining: bool) -> None:
    """Refuse (ResumeRefused, naming the setting) a config that the checkpoint trained with `saved` and
    now at `counters` cannot continue into: any other agent, env, network or training setting, or a budget
    that shrinks, or offline_steps once the offline phase is over."""
    saved_flat, new_flat = _flat(saved), _flat(new)
    for key in sorted(saved_flat.keys() | new_flat.keys()):
        if key in BUDGETS or any(key == k or key.startswith(f"{k}.") for k in MAY_CHANGE):
            continue
        if saved_flat.get(key, "<unset>") != new_flat.get(key, "<unset>"):
            raise ResumeRefused(
                f"resume=true cannot change {key}: the checkpoint was trained with {key}="
                f"{saved_flat.get(key, '<unset>')}, this run sets {new_flat.get(key, '<unset>')} (a new "
                "hydra.run.dir starts a new run)"
            )
    for key in BUDGETS:
        if new[key] < saved[key]:
            raise ResumeRefused(
                f"resume=true cannot shrink {key}: {new[key]} < {saved[key]} of the checkpoint"
            )
    if (
        offline_pretraining
        and new["offline_steps"] != saved["offline_steps"]
        and counters["phase"] != "offline"
    ):
        raise ResumeRefused(
            f"resume=true cannot change offline_steps to {new['offline_steps']}: the checkpoint has finished "
            f"its {saved['offline_steps']} offline steps and is online (online_steps may still grow)"
        )
