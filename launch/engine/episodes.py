"""Episodes: each one's reset seed, fixed by the run's seed, what the episode is for and its index, so a
resumed run replays the same episodes; and the open online episodes a checkpoint holds, replayed on resume."""

from __future__ import annotations

import enum

import numpy as np

import envs


class EpisodePurpose(enum.IntEnum):
    """What an episode is for: with the run's seed and the episode's index it fixes the reset seed."""

    ONLINE = 0
    EVAL = 1
    TARGET_SWEEP = 2  # a sequence agent's evaluation sweep of target returns


def episode_seed(seed: int, purpose: EpisodePurpose, index: int) -> int:
    """A reset seed fixed by (run seed, purpose, episode index), so resumed runs replay the same episodes."""
    return int(np.random.SeedSequence([seed, int(purpose), index]).generate_state(1)[0])


def online_seed(run, index: int) -> int:
    """The reset seed of run `index`'s current online episode."""
    member = run.members[index]
    return episode_seed(member.seed, EpisodePurpose.ONLINE, run.counters.runs[index].episode)


def reopen(run, vector_env, open_actions: list[list], saved: list[dict]) -> np.ndarray:
    """Every run's env reset to its current online episode with `open_actions[i]` (the open episode's
    actions at a checkpoint) replayed: the observations (runs, ...). Refuses an env that does not reach the
    observation the checkpoint saved (`saved[i]["observation"]`)."""
    shape = vector_env.single_observation_space.shape
    observations = envs.reset_runs(
        vector_env,
        np.zeros((run.num_runs,) + shape, envs.observation_dtype(vector_env.single_observation_space.dtype)),
        range(run.num_runs),
        [online_seed(run, index) for index in range(run.num_runs)],
        open_actions,
    )
    for index, episode in enumerate(saved):
        if "observation" in episode and not np.array_equal(observations[index], episode["observation"]):
            raise RuntimeError(
                f"resuming {run.members[index].run_dir}: replaying the open episode's actions did not "
                "reproduce its state; the env is not deterministic given its reset seed and actions"
            )
    return observations


class OnlineRuns:
    """What the online host sides of both batch kinds share: each run's open episode as the last checkpoint
    saved it (`saved`, empty for a fresh phase), its owed updates and its latest update metrics."""

    def __init__(self, run):
        self.run = run
        self.saved = [counters.online or {} for counters in run.counters.runs]
        self.owed = [episode.get("owed", 0) for episode in self.saved]
        self.metrics: list[dict] = [{} for _ in run.members]

    def pay(self, counts: list[int]) -> None:
        """`counts[i]` of run i's owed updates (all of them or none), in one dispatch."""
        if not any(counts):
            return
        for index, metrics in enumerate(self.run.update(counts, online=True)):
            if counts[index]:
                self.metrics[index] = metrics
                self.owed[index] = 0
