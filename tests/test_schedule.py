"""The events of a phase (launch/engine/schedule.py) against the plain rule they replace, and the counters'
JSON round trip."""

import numpy as np
import pytest

from launch.engine.schedule import EVAL, LOG, SAVE, Counters, RunCounters, Schedule


def due_by_modulo(step: int, last: bool, intervals: dict) -> set:
    """The offline loop's rule before the schedule: an event is due at a multiple of its interval."""
    return {event for event, interval in intervals.items() if step % interval == 0 or last}


def test_dispatches_stop_at_every_multiple_and_events_match_the_modulo_rule():
    intervals = {LOG: 5, EVAL: 15, SAVE: 10}
    schedule, step, total, seen = Schedule.after(0, intervals), 0, 40, []
    while step < total:
        step += min(4, schedule.boundary() - step, total - step)  # 4 updates per dispatch at most
        due = schedule.due(step, last=step == total)
        assert due == due_by_modulo(step, step == total, intervals), step
        seen.append(step)
    assert {5, 10, 15, 20, 30, 40} <= set(seen)  # every multiple is a dispatch boundary


def test_steps_that_jump_get_an_event_at_the_first_step_past_its_multiple():
    """Whole episodes (a sequence agent's event points): 12 steps each, a log interval of 10."""
    schedule = Schedule.after(0, {LOG: 10, SAVE: 25})
    assert [sorted(schedule.due(step, last=step == 60)) for step in (12, 24, 36, 48, 60)] == [
        [LOG],
        [LOG],
        [LOG, SAVE],
        [LOG],
        [LOG, SAVE],
    ]


@pytest.mark.parametrize("start", [0, 7, 20])
def test_a_resumed_schedule_is_due_strictly_after_its_step(start):
    schedule = Schedule.after(start, {LOG: 10})
    assert not schedule.due(start, last=False)
    expected = (start // 10 + 1) * 10
    assert [step for step in range(start + 1, 50) if schedule.due(step, last=False)][0] == expected


def test_counters_round_trip_and_read_a_checkpoint_with_one_shared_evaluation_round():
    counters = Counters.start(2)
    counters.runs[1] = RunCounters(episode=3, eval_round=2, success={"online": 0.5}, online={"owed": 4})
    counters.env_step, counters.offline_step = 17, 20
    assert Counters.from_json(counters.to_json()) == counters
    assert counters.global_step == 37
    older = {  # a checkpoint written when the evaluation round was one for the vector
        "phase": "online",
        "offline_step": 20,
        "env_step": 17,
        "elapsed": 1.5,
        "eval_round": 4,
        "runs": [{"episode": 1, "success": {}, "online": None}] * 2,
    }
    restored = Counters.from_json(older)
    assert [run.eval_round for run in restored.runs] == [4, 4]
    assert np.isclose(restored.elapsed, 1.5) and restored.stream is None
