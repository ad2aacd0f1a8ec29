"""The offline-to-online protocol (Li, Zhou & Levine 2025, "Offline-to-online protocol") for a vector of runs.

    run = Run(cfg, run_dir); run.start()                      # a fresh run, or its latest checkpoint
    an evaluation the checkpoint owes (a signal cut it short), first
    offline (offline_steps updates; 0 for the online-only RLPD family):
        while offline_step < offline_steps:
            updates up to the next event (at most updates_per_dispatch), every run at once
            at each due event: log | swap (a streamed dataset's next shard) | eval | save
            at a signal: checkpoint, stop (one cutting an evaluation short: the checkpoint owes it)
    online (online_steps environment steps):
        while True:
            at each due event (or at the end of a run's chunk or episode): the updates it owes
                (utd_ratio per step after start_training)
            at each due event: log | swap (env.swap_online) | eval | save
            stop after the last step; at a signal: checkpoint (with the open episodes), stop
            one step of every run: a chunk-batch agent acts from its observation and carry (its chunk's
            next action, a new chunk when the queue is empty; or a closed-loop agent's own step:
            launch/engine/acting.py) and appends the transition with the fields its agent records; a
            sequence agent acts from its context window and appends the whole trajectory at the
            episode's end

Events come from a Schedule (launch/engine/schedule.py): each is due at the first of a run's event points
at or past a multiple of its interval, and at a phase's last step. A TD agent's every step is an event
point; a sequence agent's are its episode ends. A run of a vector updates, evaluates and saves exactly when
it would alone, so each member equals its single run. A run resumes exactly from any checkpoint: an open
episode is replayed from its reset seed and recorded actions.
"""

from __future__ import annotations

from tqdm import tqdm

from launch.engine.run import Run
from launch.engine.schedule import EVAL, LOG, SAVE, SWAP, Schedule


def offline_phase(run: Run) -> None:
    cfg, counters = run.cfg, run.counters
    intervals = {LOG: cfg.log_interval, EVAL: cfg.eval_interval, SAVE: cfg.save_interval}
    if run.stream is not None:
        intervals[SWAP] = cfg.env.shard_interval
    schedule = Schedule.after(counters.offline_step, intervals)
    bar = tqdm(total=run.offline_steps, initial=counters.offline_step, desc="offline", unit="upd")
    while counters.offline_step < run.offline_steps:
        step = counters.offline_step
        num_updates = min(cfg.updates_per_dispatch, schedule.boundary() - step, run.offline_steps - step)
        metrics = run.update([num_updates] * run.num_runs, online=False)
        counters.offline_step = step = step + num_updates
        bar.update(num_updates)
        due = schedule.due(step, last=step == run.offline_steps)
        if LOG in due:
            run.log(
                [{f"offline/{k}": v for k, v in run_metrics.items()} for run_metrics in metrics], "offline"
            )
        if SWAP in due:  # before evaluating, which reads no data, so that a cut evaluation is the step's last
            run.swap_shard()
        if EVAL in due:
            bar.set_postfix(success=run.evaluate("offline"))
        if SAVE in due:
            run.save()
        run.stop_if_signalled()
    bar.close()


def online_phase(run: Run) -> None:
    cfg, counters = run.cfg, run.counters
    counters.phase = "online"
    if cfg.online_steps == 0:
        return
    actors = run.kind.online()
    intervals = {LOG: cfg.log_interval, EVAL: cfg.eval_interval, SAVE: cfg.save_interval}
    # The reference (ColinQiyangLi/qc main.py) swaps offline only: online, the last shard stays resident
    # beside the online data unless env.swap_online; then a swap every shard_interval updates.
    if run.stream is not None and cfg.env.swap_online:
        intervals[SWAP] = max(1, cfg.env.shard_interval // run.members[0].cfg.utd_ratio)
    # One schedule per run: its events fall at its own event points (any step for a TD agent, whose runs so
    # share every event; a sequence agent's episode ends), so each run of a vector does what it would alone.
    schedules = [Schedule.after(counters.env_step, intervals) for _ in run.members]
    bar = tqdm(total=cfg.online_steps, initial=counters.env_step, desc="online", unit="step")
    while True:
        step = counters.env_step
        last = step == cfg.online_steps
        due = [
            schedule.due(step, last) if last or actors.at_event_point(index) else frozenset()
            for index, schedule in enumerate(schedules)
        ]
        actors.catch_up([bool(events) for events in due])
        bar.update(step - bar.n)
        metrics = [m if LOG in events else {} for m, events in zip(actors.metrics, due, strict=True)]
        run.log([{f"online/{k}": v for k, v in run_metrics.items()} for run_metrics in metrics], "online")
        if any(SWAP in events for events in due) and not last:
            run.swap_shard()
        if evaluated := [index for index, events in enumerate(due) if EVAL in events]:
            bar.set_postfix(success=run.evaluate("online", evaluated, actors))
        if any(SAVE in events for events in due):
            run.save(actors.open_episodes())
        if last:
            break
        run.stop_if_signalled(actors)
        actors.step()
    bar.close()


def run_protocol(run: Run) -> None:
    """What is left of the protocol for a started (fresh or resumed) run."""
    run.evaluate_owed()
    if run.finished:
        return
    if run.counters.phase == "offline":
        offline_phase(run)
    online_phase(run)
