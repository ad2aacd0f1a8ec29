"""Device-resident transition storage and chunk sampling, all jittable."""

from buffers.chunks import Segment, gather_chunks, sample_chunks, sample_mixed, sample_pooled, sample_starts
from buffers.goals import GoalReplay, GoalStore, gather_goal_chunks, goal_store, make_goal_replay
from buffers.replay import Replay, make_replay
from buffers.store import TransitionStore, empty, from_dataset, insert, insert_many, nbytes

__all__ = [
    "GoalReplay",
    "GoalStore",
    "Replay",
    "Segment",
    "TransitionStore",
    "empty",
    "from_dataset",
    "gather_chunks",
    "gather_goal_chunks",
    "goal_store",
    "insert",
    "insert_many",
    "make_goal_replay",
    "make_replay",
    "nbytes",
    "sample_chunks",
    "sample_mixed",
    "sample_pooled",
    "sample_starts",
]
