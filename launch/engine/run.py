"""A vector of training runs: its state (agents, RNGs, replay, counters) and the operations the protocol
(launch/engine/protocol.py) is made of: update, evaluate, log, save, resume, stop at a signal.

What an agent learns from decides the rest: its `batch_kind` ("chunks": every TD agent,
launch/engine/chunks.py; "trajectories": the sequence agents, launch/engine/sequences.py) builds the
replay and agents, acts online and evaluates. The engine never reads an agent's name.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NoReturn

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

import agents
import buffers
import envs
import preemption
from launch.engine import devices, settings
from launch.engine.chunk_data import resident_shards
from launch.engine.chunks import Chunks
from launch.engine.fused import fused_updates
from launch.engine.schedule import Counters
from launch.engine.sequences import Sequences
from launch.engine.vector import Member, run_tags, stack, vector_members
from launch.reliability.checkpoints import Checkpointer, check_resumable
from launch.reliability.logger import Logger
from launch.reliability.metrics import METRICS_FILE, drop_rows_after

log = logging.getLogger(__name__)

# batch_kind of an agent (agents/*.py) -> the engine's side of it
KINDS = {"chunks": Chunks, "trajectories": Sequences}


class NonFiniteLossError(RuntimeError):
    """A loss or metric became NaN or inf; the run stops and keeps its last good checkpoint."""


class Run:
    """The state of a vector of training runs, built from its config; `start()` resumes it or starts it."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = run_dir
        self.members = vector_members(cfg, run_dir)
        envs.check_renderer([member.env_cfg for member in self.members], cfg.eval.video_episodes > 0)
        domain = envs.domain_of(self.members[0].cfg.env.name)
        self.member_settings = [settings.agent_settings(member.cfg, domain) for member in self.members]
        self.agent_settings = self.member_settings[0]  # the settings every run shares (static ones)
        self.counters = Counters.start(self.num_runs)
        self.rng = stack([jax.random.PRNGKey(member.seed + 1) for member in self.members])
        batch_kind = agents.agent_module(self.agent_settings["algorithm"]).Agent.batch_kind
        self.kind = KINDS[batch_kind](self)
        data, self.agent = self.kind.build()
        self.replay, self.stream, self.dataset_records = data.replay, data.stream, data.records
        chosen = devices.select(cfg.get("devices", "all"), self.num_runs)
        self.placement = devices.Placement(chosen) if len(chosen) > 1 else None
        self.place()
        log.info(
            "replay: %d runs on %d %s device(s); %.1f MiB (the offline data stored once per device)",
            self.num_runs,
            len(chosen),
            chosen[0].platform,
            buffers.nbytes(self.replay) / 2**20,
        )
        # The online-only agents (RLPD family) skip pre-training whatever offline_steps says (presets set it).
        self.offline_steps = cfg.offline_steps if self.agent_config.offline_pretraining else 0
        self.checkpointer = Checkpointer(run_dir)
        self._vector_envs: dict = {}
        self.start_step = self.saved_step = None  # the step resumed from; of the latest checkpoint written
        self.loggers: list[Logger] = []

    @property
    def num_runs(self) -> int:
        return len(self.members)

    @property
    def agent_config(self):
        return agents.make_config(self.agent_settings)

    @property
    def execution_length(self) -> int | None:
        """Actions of each chunk executed before the policy is queried again (None: the whole chunk)."""
        return self.cfg.agent.get("execution_length")

    @property
    def global_step(self) -> int:
        return self.counters.global_step

    def place(self) -> None:
        """With several devices: each run's agent, RNG and online data on its device, the offline data on
        all of them."""
        if self.placement is not None:
            self.agent, self.rng = self.placement.runs((self.agent, self.rng))
            self.replay = self.placement.replay(self.replay)

    def vector_env(self, purpose: str):
        """The runs' envs for `purpose` ("online" or "eval"), made on first use."""
        if purpose not in self._vector_envs:
            # eval.workers envs per run for evaluation
            copies = settings.eval_workers(self.cfg, len(self.members)) if purpose == "eval" else 1
            self._vector_envs[purpose] = envs.make_vector_env(
                [member.env_cfg for member in self.members for _ in range(copies)],
                videos=purpose == "eval" and self.cfg.eval.video_episodes > 0,
            )
        return self._vector_envs[purpose]

    # ---- starting: a fresh run, or the latest checkpoint --------------------------------------------------

    def start(self) -> None:
        """Resume from the latest checkpoint (resume=true), or start afresh, refusing to overwrite one;
        then open each run's logger, unless the resumed run is already complete (`finished`), which stays
        as it is. A signal that came while the data loaded and the agents were built stops the run here."""
        preemption.pause_for_tests("load", 0)
        preemption.stop_if_received(
            f"loading the data and agents of {self.run_dir}",
            "before the first update",
            "nothing written; a rerun starts as this one would have (resume=true: from its last checkpoint)",
        )
        latest = self.checkpointer.latest_step()
        if latest is None:
            if self.cfg.resume:
                log.info("resume=true but %s holds no checkpoint: starting from scratch", self.run_dir)
            for member in self.members:
                (member.run_dir / METRICS_FILE).unlink(missing_ok=True)
        elif not self.cfg.resume:
            raise FileExistsError(
                f"{self.run_dir} already holds checkpoints (latest step {latest}); pass resume=true to "
                "continue that run, or choose another run dir with hydra.run.dir=..."
            )
        else:
            self.resume()
        if self.finished:
            return
        self.loggers = [
            self._logger(member, record)
            for member, record in zip(self.members, self.dataset_records, strict=True)
        ]

    @property
    def finished(self) -> bool:
        """Whether a resumed run has nothing left to do: every offline update and online step is done (a
        larger online_steps on resume leaves steps to do). A requeued or re-submitted job lands here."""
        counters = self.counters
        done = counters.offline_step >= self.offline_steps and counters.env_step >= self.cfg.online_steps
        return self.start_step is not None and done and not counters.owed_eval

    def resume(self) -> None:
        """The state of the latest checkpoint; each run's metrics.jsonl cut back to its step (the rows after
        it will be logged again)."""
        step, state, counters = self.checkpointer.restore(self.resume_template)
        self.counters = Counters.from_json(counters)
        self.agent, self.rng = state["agent"], state["rng"]
        part = state["replay"]
        if isinstance(self.replay, buffers.replay.Replay):
            part = self._grown(*part)
        self.replay = self.replay.with_run_part(part)
        if self.stream is not None:
            self.replay = self.replay.replace(offline=self.stream.restore(self.counters.stream))
        self.place()
        for member in self.members:
            drop_rows_after(member.run_dir / METRICS_FILE, step)
        self.start_step = self.saved_step = step
        log.info("resumed from step %d (%s phase)", step, self.counters.phase)

    def _grown(self, online, *rest) -> tuple:
        """A restored run part with the online replay grown to this run's size (online_steps grew)."""
        size = self.replay.online.actions.shape[1]
        if online.actions.shape[1] == size:
            return online, *rest
        log.info("online_steps grew: each online replay grows from %d to %d", online.actions.shape[1], size)
        return jax.vmap(buffers.store.grow)(online, self.replay.online), *rest

    @property
    def resolved_config(self) -> dict:
        return OmegaConf.to_container(self.cfg, resolve=True)

    @property
    def state(self) -> dict:
        return {"agent": self.agent, "replay": self.replay.run_part(), "rng": self.rng}

    def resume_template(self, saved_config: dict, counters: dict) -> dict:
        """The state a checkpoint saved with `saved_config` restores into: this run's, with the online replay
        at its saved size (grown after the restore when online_steps grew). Refuses what cannot continue."""
        check_resumable(saved_config, self.resolved_config, counters, self.agent_config.offline_pretraining)
        state = self.state
        if not isinstance(self.replay, buffers.replay.Replay):
            return state
        online = self.replay.online
        capacity = buffers.replay.online_capacity(saved_config["buffer_size"], saved_config["online_steps"])
        saved = buffers.store.empty_like(online, capacity)
        saved = jax.tree_util.tree_map(
            lambda leaf: jnp.broadcast_to(leaf, (self.num_runs,) + leaf.shape), saved
        )
        return {**state, "replay": (saved, *self.replay.run_part()[1:])}

    def _logger(self, member: Member, dataset: dict) -> Logger:
        """The run's logger; its config (.hydra/config.yaml and W&B) gains `dataset`: the provenance of the
        data it trains on (path, transitions, sha256, source)."""
        (member.run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        logger_cfg = member.cfg.logger
        if self.num_runs > 1 and logger_cfg.group is None:  # a vector's runs share one W&B group
            logger_cfg = OmegaConf.merge(logger_cfg, {"group": self.run_dir.name})
        saved_path = member.run_dir / ".hydra" / "config.yaml"
        # Hydra writes the config of a single run (kept as written); a member's is written here
        hydra_written = member.run_dir == self.run_dir and saved_path.exists()
        saved = (
            OmegaConf.load(saved_path)
            if hydra_written
            else OmegaConf.create(OmegaConf.to_container(member.cfg, resolve=True))
        )
        with open_dict(saved):
            saved.dataset = dataset
        OmegaConf.save(saved, saved_path)
        config = OmegaConf.to_container(member.cfg, resolve=True)
        config["agent"] = self.member_settings[self.members.index(member)]
        config["dataset"] = dataset
        return Logger(
            member.run_dir, config, logger_cfg, run_tags(member), elapsed_offset=self.counters.elapsed
        )

    # ---- the operations of the protocol -------------------------------------------------------------------

    def update(self, num_updates: list[int], online: bool) -> list[dict]:
        """Fused updates, `num_updates[i]` for run i; stops at the first non-finite metric, naming the run
        and the update step. Returns each run's mean metrics ({} for a run given no update)."""
        self.agent, self.rng, metrics, first_bad, bad = fused_updates(
            self.agent,
            self.rng,
            self.replay,
            # one count for all (every offline dispatch): an unbatched trip count
            jnp.int32(num_updates[0]) if len(set(num_updates)) == 1 else jnp.asarray(num_updates, jnp.int32),
            batch_size=self.cfg.batch_size,
            online=online,
            run_map="vmap" if self.placement is not None else None,  # a sharded run axis is batched
        )
        metrics, first_bad, bad = jax.device_get((metrics, first_bad, bad))
        for index in np.flatnonzero(first_bad >= 0):
            names = ", ".join(sorted(name for name, flags in bad.items() if flags[index]))
            bad_update = int(first_bad[index])
            if online:
                where = f"online update {bad_update + 1} of {num_updates[index]} at step {self.global_step}"
            else:
                where = f"offline update step {self.counters.offline_step + bad_update + 1}"
            run = f" in run {self.members[index].run_dir.name}" if self.num_runs > 1 else ""
            raise NonFiniteLossError(
                f"non-finite {names} at {where}{run}; the last good checkpoint in "
                f"{self.checkpointer.directory} is kept (resume=true restarts from it)"
            )
        return [
            {key: float(value[index]) for key, value in metrics.items()} if num_updates[index] else {}
            for index in range(self.num_runs)
        ]

    def evaluate(self, phase: str, runs: list[int] | None = None, actors=None) -> float:
        """Evaluate each of `runs` (every run when None) in its next round (its episodes fixed by its seed
        and the round); logs each one's metrics and videos, returns their mean success.

        A signal stops the evaluation within an env step; the checkpoint of this step (with the open
        episodes of the online `actors`) then owes it, and the resumed run evaluates first (`evaluate_owed`),
        in the same round, so its rows equal the uninterrupted run's."""
        preemption.pause_for_tests("eval", self.global_step)
        runs = list(range(self.num_runs)) if runs is None else runs
        self.counters.owed_eval = runs
        try:
            results, videos = self.kind.evaluate(runs, [self.counters.runs[i].eval_round for i in runs])
        except preemption.Interrupted as stopped:
            log.warning("step %d: %s; the checkpoint of this step owes it", self.global_step, stopped)
            self.stop(actors)
        self.counters.owed_eval = []
        for index, metrics, run_videos in zip(runs, results, videos, strict=True):
            counters = self.counters.runs[index]
            counters.eval_round += 1
            counters.success[phase] = metrics["eval/success"]
            self.loggers[index].log(metrics, self.global_step, phase)
            for video_index, frames in enumerate(run_videos):
                self.loggers[index].log_video(f"eval/video_{video_index}", frames, self.global_step)
        return float(np.mean([metrics["eval/success"] for metrics in results]))

    def evaluate_owed(self) -> None:
        """The evaluation that a signal cut short at the step this run resumed from, if any."""
        if owed := self.counters.owed_eval:
            log.info("step %d: the evaluation a signal cut short runs first", self.global_step)
            self.evaluate(self.counters.phase, owed)

    def log(self, metrics: list[dict], phase: str) -> None:
        """Each run's metrics to its own logger."""
        for logger, run_metrics in zip(self.loggers, metrics, strict=True):
            if run_metrics:
                logger.log(run_metrics, self.global_step, phase)

    def end_episode(self, index: int, episode_return: float, length: int, success: float, done=True) -> None:
        """Run `index`'s online episode ended (done) or was cut at the end of the phase: a done episode is
        logged; the next one gets the next reset seed."""
        if done:
            metrics = {
                "online/episode_return": episode_return,
                "online/episode_length": length,
                "online/success": success,
            }
            self.loggers[index].log(metrics, self.global_step, "online")
        self.counters.runs[index].episode += 1

    def resident_shards(self) -> list[str]:
        return resident_shards(self.stream)

    def swap_shard(self) -> None:
        """The next shard of the stream over the oldest resident one (read ahead on a background thread)."""
        self.replay = self.replay.replace(offline=self.stream.swap(self.replay.offline))
        self.place()
        log.info(
            "shard swap %d at step %d: resident %s (swaps waited %.2f s for the reader in all)",
            self.stream.position,
            self.global_step,
            self.resident_shards(),
            self.stream.waited_s,
        )

    def save(self, open_episodes: list | None = None) -> None:
        """A checkpoint of this step, with each run's open episode (`open_episodes`, online) to replay."""
        preemption.pause_for_tests("save", self.global_step)
        if open_episodes is not None:
            for counters, episode in zip(self.counters.runs, open_episodes, strict=True):
                counters.online = episode
        self.counters.elapsed = self.loggers[0].elapsed
        if self.stream is not None:
            self.counters.stream = self.stream.state()
        self.checkpointer.save(self.global_step, self.state, self.counters.to_json(), self.resolved_config)
        self.saved_step = self.global_step

    def stop_if_signalled(self, actors=None) -> None:
        """`stop` once a signal has arrived (preemption/__init__.py)."""
        if self.global_step != self.start_step:
            preemption.pause_for_tests("step", self.global_step)
        if preemption.received() is not None:
            self.stop(actors)

    def stop(self, actors=None) -> NoReturn:
        """After a signal: a checkpoint of this step (with the open episodes of the online `actors`), unless
        one was just saved, then `Interrupted`."""
        if self.saved_step != self.global_step:
            self.save(None if actors is None else actors.open_episodes())
        raise preemption.Interrupted(preemption.received(), self.global_step)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.kind.close()
        for vector_env in self._vector_envs.values():
            vector_env.close()
        for logger in self.loggers:
            logger.close()
        self.checkpointer.close()
