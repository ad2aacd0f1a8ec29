"""Evaluation rollouts of every run of a vector at once: every env acts at every step from its observation
and its carry (launch/engine/acting.py: a chunk queue, or a closed-loop agent's own), success read at each
episode's last step."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

import envs
import preemption
from launch.engine import acting
from launch.engine.episodes import EpisodePurpose, episode_seed


def stop_at_a_signal(progress: str) -> None:
    """Evaluation's safe point, after every env step: a signal ends it there (`Interrupted`) rather than at
    its last episode, minutes away at the paper's protocol; the run's checkpoint owes it (Run.evaluate)."""
    preemption.stop_if_received("evaluation", progress, "its results are dropped")


def evaluate_runs(
    agents,
    vector_env,
    seeds: Sequence[int],
    num_episodes: int,
    rounds: Sequence[int],
    execution_length: int | None = None,
    video_episodes: int = 0,
) -> tuple[list[dict[str, float]], list[list[np.ndarray]]]:
    """eval/success, eval/episode_return and eval/episode_length of each run, each the mean over its own
    `num_episodes` episodes, run i in envs i * workers ... (i + 1) * workers - 1 of `vector_env` (workers =
    its envs per run: eval.workers) with the agent at index i of `agents`.

    Each env acts through `acting.act_runs` with its evaluation policy, one call per worker slot (each the
    batch of runs a serial evaluation has); an open-loop agent executes the first `execution_length` steps
    of a chunk (all when None) before its policy is queried again. An env's key chain advances only where a
    decision starts (its carry's steps_left = 0), so each episode's reset seed and action keys depend only
    on (seeds[i], round_index, episode index), and the metrics are those of a serial evaluation whatever the
    number of workers. The first `video_episodes` episodes of each run are rendered.
    """
    num_runs = len(seeds)
    workers = vector_env.num_envs // num_runs
    assert workers * num_runs == vector_env.num_envs, "each run has the same number of eval envs"
    num_envs = num_runs * workers
    run_of = np.arange(num_envs) // workers
    episode = np.full(num_envs, -1)  # the episode each env plays, -1 when idle
    started = np.zeros(num_runs, int)  # episodes of each run handed to an env so far
    keys = np.zeros((num_envs, 2), np.uint32)
    outcomes: list[dict[int, tuple]] = [{} for _ in seeds]
    clips: list[dict[int, np.ndarray]] = [{} for _ in seeds]
    frames: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
    returns, lengths = np.zeros(num_envs), np.zeros(num_envs, int)
    shape = vector_env.single_observation_space.shape

    def start(envs_free) -> tuple[list[int], list[int]]:
        """Hand each env of `envs_free` its run's next episode, if any left; the envs and their seeds."""
        chosen, episode_seeds = [], []
        for index in envs_free:
            run = run_of[index]
            episode[index] = started[run] if started[run] < num_episodes else -1
            if episode[index] < 0:
                continue
            started[run] += 1
            base = jax.random.fold_in(jax.random.PRNGKey(seeds[run]), rounds[run])
            keys[index] = np.asarray(jax.random.fold_in(base, int(episode[index])))
            chosen.append(index)
            index_in_all = rounds[run] * num_episodes + int(episode[index])
            episode_seeds.append(episode_seed(seeds[run], EpisodePurpose.EVAL, index_in_all))
        return chosen, episode_seeds

    observations = envs.reset_runs(
        vector_env,
        np.zeros((num_envs,) + shape, envs.observation_dtype(vector_env.single_observation_space.dtype)),
        *start(range(num_envs)),
    )
    initial = acting.initial_carry(agents, observations[0], execution_length)
    carries = acting.stack_carries([initial] * num_envs)
    while (active := episode >= 0).any():
        actions = np.zeros((num_envs, *vector_env.single_action_space.shape), np.float32)
        deciding = active & (carries["steps_left"] == 0)
        for worker in range(workers):  # one call per worker slot: the batch of runs serial evaluation has
            slot = np.arange(worker, num_envs, workers)
            if not active[slot].any():
                continue
            split = np.asarray(jax.vmap(jax.random.split)(keys[slot]))
            keys[slot] = np.where(deciding[slot][:, None], split[:, 0], keys[slot])
            act_keys = np.where(deciding[slot][:, None], split[:, 1], keys[slot])
            slot_carries = jax.tree_util.tree_map(lambda leaf, slot=slot: leaf[slot], carries)
            slot_actions, slot_carries, _ = jax.device_get(
                acting.act_runs(
                    agents, observations[slot], slot_carries, act_keys, active[slot], evaluation=True
                )
            )
            actions[slot] = np.where(active[slot][:, None], slot_actions, 0.0)
            for leaves, new in zip(carries.values(), slot_carries.values(), strict=True):
                leaves[slot] = new
        observations, rewards, terminated, truncated, infos = vector_env.step(actions)
        observations = envs.observation_array(observations)
        stop_at_a_signal(f"after {sum(map(len, outcomes))} of {num_runs * num_episodes} episodes")
        rendering = active & (episode < video_episodes)
        if rendering.any():
            images = vector_env.call("render")
            for index in np.flatnonzero(rendering):
                frames[index].append(images[index])
        returns += np.where(active, rewards, 0.0)
        lengths += active
        ended = [i for i in range(num_envs) if active[i] and (terminated[i] or truncated[i])]
        for index in ended:
            run = run_of[index]
            outcomes[run][int(episode[index])] = (
                float(infos["success"][index]),
                float(returns[index]),
                int(lengths[index]),
            )
            if frames[index]:
                clips[run][int(episode[index])] = np.stack(frames[index])
            frames[index], returns[index], lengths[index] = [], 0.0, 0
            carries = acting.set_carry(carries, index, initial)
        observations = envs.reset_runs(vector_env, observations, *start(ended))
    metrics = []
    for outcome in outcomes:
        success, returned, length = np.asarray([outcome[e] for e in sorted(outcome)]).T
        metrics.append(
            {
                "eval/success": float(np.mean(success)),
                "eval/episode_return": float(np.mean(returned)),
                "eval/episode_length": float(np.mean(length)),
            }
        )
    return metrics, [[clip[e] for e in sorted(clip)] for clip in clips]
