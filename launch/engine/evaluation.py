"""Evaluation rollouts of every run of a vector at once: chunks executed open-loop, success read at each
episode's last step."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np

import envs
import preemption
from launch.engine.episodes import EpisodePurpose, episode_seed

ActFn = Callable[[object, np.ndarray, jax.Array], jax.Array]


def stop_at_a_signal(progress: str) -> None:
    """Evaluation's safe point, after every env step: a signal ends it there (`Interrupted`) rather than at
    its last episode, minutes away at the paper's protocol; the run's checkpoint owes it (Run.evaluate)."""
    preemption.stop_if_received("evaluation", progress, "its results are dropped")


def evaluate_runs(
    act: ActFn,
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

    `act(agents, observations (runs, obs_dim), keys (runs, 2))` returns (runs, steps, action_dim); the first
    `execution_length` steps (all when None) run before an episode's policy is queried again. Each episode's
    reset seed and action keys depend only on (seeds[i], round_index, episode index), so the metrics are those
    of a serial evaluation whatever the number of workers. The first `video_episodes` episodes of each run
    are rendered.
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
    queues: list[list] = [[] for _ in range(num_envs)]
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
    while (active := episode >= 0).any():
        empty = np.asarray([active[i] and not queues[i] for i in range(num_envs)])
        for worker in range(workers):  # one query per worker slot: the batch of runs serial evaluation has
            slot = np.arange(worker, num_envs, workers)
            if not empty[slot].any():
                continue
            split = np.asarray(jax.vmap(jax.random.split)(keys[slot]))
            keys[slot] = np.where(empty[slot][:, None], split[:, 0], keys[slot])
            chunks = np.asarray(act(agents, observations[slot], split[:, 1]))
            for run in np.flatnonzero(empty[slot]):
                queues[slot[run]] = list(chunks[run][:execution_length])
        actions = np.stack(
            [
                queue.pop(0) if on else np.zeros(vector_env.single_action_space.shape)
                for queue, on in zip(queues, active, strict=True)
            ]
        ).astype(np.float32)
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
            frames[index], queues[index], returns[index], lengths[index] = [], [], 0.0, 0
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
