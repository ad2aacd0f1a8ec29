"""When things happen in a run: the named events due at a step, and the counters a checkpoint carries."""

from __future__ import annotations

import dataclasses

# The events of a phase, in the order a loop handles them at one step.
LOG, EVAL, SWAP, SAVE = "log", "eval", "swap", "save"


def next_multiple(step: int, interval: int) -> int:
    """The first multiple of `interval` strictly after `step`."""
    return (step // interval + 1) * interval


@dataclasses.dataclass
class Schedule:
    """Which of log / eval / swap / save are due at a step: each event with an interval is due at the first
    step at or past the next multiple of it (steps may jump: an online step, a whole episode) and at the
    phase's last step. The offline, online and sequence loops all ask the same object."""

    intervals: dict[str, int]
    upcoming: dict[str, int]

    @classmethod
    def after(cls, step: int, intervals: dict[str, int]) -> Schedule:
        """The schedule of a phase at `step` (its start, or the step a run resumed from)."""
        return cls(dict(intervals), {event: next_multiple(step, i) for event, i in intervals.items()})

    def boundary(self) -> int:
        """The next step at which any event falls: a fused dispatch of updates stops there."""
        return min(self.upcoming.values())

    def due(self, step: int, last: bool) -> frozenset[str]:
        """The events due at `step` (every event at the last step); they are rescheduled past `step`."""
        due = frozenset(event for event, at in self.upcoming.items() if step >= at or last)
        for event in due:
            self.upcoming[event] = next_multiple(step, self.intervals[event])
        return due


@dataclasses.dataclass
class RunCounters:
    """One run's host counters: its online episodes and evaluation rounds so far, its latest success per
    phase and, in a checkpoint, its open episode (owed updates, actions so far...), replayed on resume."""

    episode: int = 0
    eval_round: int = 0
    success: dict = dataclasses.field(default_factory=dict)
    online: dict | None = None


@dataclasses.dataclass
class Counters:
    """Where a vector of runs is in the protocol; saved as JSON beside each checkpoint."""

    runs: list[RunCounters]
    phase: str = "offline"
    offline_step: int = 0
    env_step: int = 0
    elapsed: float = 0.0
    stream: dict | None = None  # the shard stream's position (a sharded dataset)
    owed_eval: list[int] = dataclasses.field(default_factory=list)  # runs whose evaluation here a signal cut

    @classmethod
    def start(cls, num_runs: int) -> Counters:
        return cls(runs=[RunCounters() for _ in range(num_runs)])

    @property
    def global_step(self) -> int:
        """x-axis of every curve: updates offline, then offline_steps + environment steps online."""
        return self.offline_step + self.env_step

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, saved: dict) -> Counters:
        saved = dict(saved)
        shared_round = saved.pop("eval_round", None)  # a checkpoint from before rounds were per run
        runs = [
            {"eval_round": shared_round, **run} if shared_round is not None else run for run in saved["runs"]
        ]
        return cls(**{**saved, "runs": [RunCounters(**run) for run in runs]})
