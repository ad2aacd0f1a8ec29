"""Offline-to-online training (Li, Zhou & Levine 2025, "Offline-to-online protocol").

    python launch/train.py agent=qc_fql env=cube

1. Offline: `offline_steps` updates on chunks of the OGBench dataset, fused `updates_per_dispatch` at a time.
2. Online: `online_steps` environment steps. Each policy query returns a chunk that is executed open-loop
   (the queue is cleared on reset); transitions go to the replay; after `start_training` steps, `utd_ratio`
   updates per step run, fused once per executed chunk.
Evaluation every `eval_interval` steps and at the end of each phase; checkpoints every `save_interval`
(online: at the next episode end, so a resumed run replays exactly the same episodes).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import jax
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

import agents
import buffers
import envs
from launch import settings
from launch.checkpoints import Checkpointer
from launch.evaluation import episode_seed, evaluate
from launch.fused import act, env_transition, fused_updates, insert
from launch.logger import METRICS_FILE, Logger

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """A loss or metric became NaN or inf; the run stops and keeps its last good checkpoint."""


class Run:
    """The state of one training run and the few operations the protocol is made of."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = run_dir
        self.env, self.eval_env, train_dataset, _ = envs.make_env_and_datasets(cfg.env, cfg.seed)
        self.agent_settings = settings.agent_settings(cfg, envs.domain_of(cfg.env.name))
        self.build(train_dataset)
        # The online-only agents (RLPD family) skip pre-training whatever offline_steps says (presets set it).
        self.offline_steps = cfg.offline_steps if self.agent.config.offline_pretraining else 0
        self.rng = jax.random.PRNGKey(cfg.seed + 1)
        self.counters = {
            "phase": "offline",
            "offline_step": 0,
            "env_step": 0,
            "episode": 0,
            "elapsed": 0.0,
            "eval_round": 0,
            "success": {},
        }
        self.checkpointer = Checkpointer(run_dir)
        self._resume_or_refuse()
        config = OmegaConf.to_container(cfg, resolve=True)
        config["agent"] = self.agent_settings
        self.logger = Logger(
            run_dir, config, cfg.logger, run_tags(cfg), elapsed_offset=self.counters["elapsed"]
        )

    def build(self, train_dataset: dict) -> None:
        """The agent and its replay (sequence agents build theirs differently: launch/sequence_run.py)."""
        cfg = self.cfg
        obs_dim = train_dataset["observations"].shape[-1]
        action_dim = train_dataset["actions"].shape[-1]
        self.agent = agents.make_agent(self.agent_settings, cfg.seed, obs_dim, action_dim)
        self.replay = buffers.make_replay(train_dataset, cfg.buffer_size, cfg.online_steps, cfg.offline_ratio)
        log.info(
            "replay: %d offline transitions, %.1f MiB on %s",
            len(train_dataset["observations"]),
            buffers.nbytes(self.replay) / 2**20,
            jax.devices()[0].platform,
        )

    # ---- bookkeeping -------------------------------------------------------------------------------------

    @property
    def global_step(self) -> int:
        """x-axis of every curve: updates offline, then offline_steps + environment steps online."""
        return self.counters["offline_step"] + self.counters["env_step"]

    def _resume_or_refuse(self) -> None:
        latest = self.checkpointer.latest_step()
        metrics = self.run_dir / METRICS_FILE
        if latest is None:
            if self.cfg.resume:
                log.info("resume=true but %s holds no checkpoint: starting from scratch", self.run_dir)
            metrics.unlink(missing_ok=True)
            return
        if not self.cfg.resume:
            raise FileExistsError(
                f"{self.run_dir} already holds checkpoints (latest step {latest}); pass resume=true to "
                "continue that run, or choose another run dir with hydra.run.dir=..."
            )
        state, self.counters = self.checkpointer.restore(self.state)
        self.agent, self.replay, self.rng = state["agent"], state["replay"], state["rng"]
        if metrics.exists():  # drop rows logged after the checkpoint; they will be logged again
            rows = [line for line in metrics.read_text().splitlines() if _row_step(line) <= latest]
            metrics.write_text("".join(row + "\n" for row in rows))
        log.info("resumed from step %d (%s phase)", latest, self.counters["phase"])

    @property
    def state(self) -> dict:
        return {"agent": self.agent, "replay": self.replay, "rng": self.rng}

    def save(self) -> None:
        self.counters["elapsed"] = self.logger.elapsed
        self.checkpointer.save(self.global_step, self.state, self.counters)

    def train(self, num_updates: int, online: bool) -> dict:
        """Fused updates; stops the run at the first non-finite metric, naming the update step."""
        self.agent, self.rng, metrics, first_bad, bad = fused_updates(
            self.agent,
            self.rng,
            self.replay,
            np.int32(num_updates),
            batch_size=self.cfg.batch_size,
            online=online
            and self.replay.online is not None,  # one pool samples alike in both phases: one compile
        )
        first_bad = int(first_bad)
        if first_bad >= 0:
            names = ", ".join(sorted(name for name, flag in bad.items() if bool(flag)))
            if online:
                where = f"online update {first_bad + 1} of {num_updates} at step {self.global_step}"
            else:
                where = f"offline update step {self.counters['offline_step'] + first_bad + 1}"
            raise NonFiniteLossError(
                f"non-finite {names} at {where}; the last good checkpoint in {self.checkpointer.directory} "
                "is kept (resume=true restarts from it)"
            )
        return metrics

    def evaluate(self, phase: str) -> float:
        metrics, videos = evaluate(
            act,
            self.agent,
            self.eval_env,
            self.cfg.eval_episodes,
            self.cfg.seed,
            self.counters["eval_round"],
            self.cfg.eval.video_episodes,
        )
        self.counters["eval_round"] += 1
        self.counters["success"][phase] = metrics["eval/success"]
        self.logger.log(metrics, self.global_step, phase)
        for index, frames in enumerate(videos):
            self.logger.log_video(f"eval/video_{index}", frames, self.global_step)
        return metrics["eval/success"]

    # ---- the two phases ----------------------------------------------------------------------------------

    def offline_phase(self) -> None:
        cfg = self.cfg
        bar = tqdm(
            total=self.offline_steps, initial=self.counters["offline_step"], desc="offline", unit="upd"
        )
        while self.counters["offline_step"] < self.offline_steps:
            step = self.counters["offline_step"]
            boundary = min(
                next_multiple(step, i) for i in (cfg.log_interval, cfg.eval_interval, cfg.save_interval)
            )
            num_updates = min(cfg.updates_per_dispatch, boundary - step, self.offline_steps - step)
            metrics = self.train(num_updates, online=False)
            self.counters["offline_step"] = step = step + num_updates
            bar.update(num_updates)
            last = step == self.offline_steps
            if step % cfg.log_interval == 0 or last:
                self.logger.log({f"offline/{k}": v for k, v in metrics.items()}, step, "offline")
            if step % cfg.eval_interval == 0 or last:
                bar.set_postfix(success=self.evaluate("offline"))
            if step % cfg.save_interval == 0 or last:
                self.save()
        bar.close()

    def online_phase(self) -> None:
        cfg = self.cfg
        counters = self.counters
        counters["phase"] = "online"
        bar = tqdm(total=cfg.online_steps, initial=counters["env_step"], desc="online", unit="step")
        observation, _ = self.env.reset(seed=episode_seed(cfg.seed, 0, counters["episode"]))
        queue: list = []
        owed_updates, episode_return, episode_length = 0, 0.0, 0
        metrics: dict = {}
        next_log = next_multiple(counters["env_step"], cfg.log_interval)
        next_eval = next_multiple(counters["env_step"], cfg.eval_interval)
        next_save = next_multiple(counters["env_step"], cfg.save_interval)
        act_key = jax.random.PRNGKey(cfg.seed + 2)
        while counters["env_step"] < cfg.online_steps:
            step = counters["env_step"]
            if not queue:
                if step < cfg.random_action_steps:
                    queue = [
                        np.random.default_rng([cfg.seed, step]).uniform(-1, 1, self.env.action_space.shape)
                    ]
                else:
                    key = jax.random.fold_in(act_key, step)
                    queue = list(np.asarray(act(self.agent, observation[None], key))[0])
            action = np.asarray(queue.pop(0), np.float32)
            next_observation, reward, terminated, truncated, info = self.env.step(action)
            done = terminated or truncated
            self.replay = insert(
                self.replay,
                env_transition(observation, action, reward, terminated, truncated, next_observation),
            )
            counters["env_step"] = step = step + 1
            owed_updates += cfg.utd_ratio if step >= cfg.start_training else 0
            episode_return += float(reward)
            episode_length += 1
            observation = next_observation
            if done:
                self.logger.log(
                    {
                        "online/episode_return": episode_return,
                        "online/episode_length": episode_length,
                        "online/success": float(info["success"]),
                    },
                    self.global_step,
                    "online",
                )
                counters["episode"] += 1
                observation, _ = self.env.reset(seed=episode_seed(cfg.seed, 0, counters["episode"]))
                queue, episode_return, episode_length = [], 0.0, 0
            if queue and step < cfg.online_steps:
                continue
            # A chunk has been executed (or the episode ended): catch up on updates in one dispatch.
            if owed_updates:
                metrics = self.train(owed_updates, online=True)
                owed_updates = 0
            bar.update(step - bar.n)
            last = step == cfg.online_steps
            if (step >= next_log or last) and metrics:
                self.logger.log({f"online/{k}": v for k, v in metrics.items()}, self.global_step, "online")
                next_log = next_multiple(step, cfg.log_interval)
            if step >= next_eval or last:
                bar.set_postfix(success=self.evaluate("online"))
                next_eval = next_multiple(step, cfg.eval_interval)
            if (step >= next_save and done) or last:
                self.save()
                next_save = next_multiple(step, cfg.save_interval)
        bar.close()

    def close(self) -> None:
        self.logger.close()
        self.checkpointer.close()


def run_tags(cfg: DictConfig) -> list[str]:
    """W&B tags that dashboards group by."""
    return [
        cfg.agent.name,
        cfg.env.name,
        f"chunk_length={cfg.agent.chunk_length}",
        f"task={cfg.env.task}",
        f"seed={cfg.seed}",
    ]


def next_multiple(step: int, interval: int) -> int:
    """The first multiple of `interval` strictly after `step`."""
    return (step // interval + 1) * interval


def _row_step(line: str) -> int:
    return json.loads(line)["step"]


def train(cfg: DictConfig, run_dir: Path) -> Run:
    """Run the whole protocol (or what is left of it after a resume) in `run_dir`."""
    settings.validate(cfg)
    from launch.sequence_run import SequenceRun

    run = (SequenceRun if cfg.agent.algorithm == "radt" else Run)(cfg, run_dir)
    try:
        if run.counters["phase"] == "offline":
            run.offline_phase()
        run.online_phase()
    finally:
        run.close()
    success = run.counters["success"]
    log.info(
        "done: offline success %s | online success %s | wall %.0f s | metrics %s | checkpoints %s",
        success.get("offline", "n/a"),
        success.get("online", "n/a"),
        run.logger.elapsed,
        run_dir / METRICS_FILE,
        run.checkpointer.directory,
    )
    return run


@hydra.main(config_path="../configs", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    if cfg.logger.group is None and hydra_cfg.mode == RunMode.MULTIRUN:
        cfg.logger.group = Path(hydra_cfg.sweep.dir).name  # every run of a sweep shares one W&B group
    train(cfg, Path(hydra_cfg.runtime.output_dir))


if __name__ == "__main__":
    main()
