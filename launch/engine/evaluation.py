"""Evaluation rollouts of every run of a vector at once: chunks executed open-loop, success read at each
episode's last step."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np

import envs
from launch.engine.episodes import EpisodePurpose, episode_seed

ActFn = Callable[[object, np.ndarray, jax.Array], jax.Array]


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
    `num_episodes` episodes, run i in env i of `vector_env` with the agent at index i of `agents`.

    `act(agents, observations (runs, obs_dim), keys (runs, 2))` returns (runs, steps, action_dim); the first
    `execution_length` steps (all when None) run before a run's policy is queried again. Run i's episodes and
    keys depend only on (seeds[i], round_index), as if it were evaluated alone. The first `video_episodes`
    episodes of each run are rendered.
    """
    num_runs = len(seeds)
    keys = jax.numpy.stack(
        [jax.random.fold_in(jax.random.PRNGKey(seed), r) for seed, r in zip(seeds, rounds, strict=True)]
    )
    episode = np.zeros(num_runs, int)
    results = [{"success": [], "return": [], "length": []} for _ in seeds]
    videos: list[list[np.ndarray]] = [[] for _ in seeds]
    frames: list[list[np.ndarray]] = [[] for _ in seeds]
    queues: list[list] = [[] for _ in seeds]
    returns, lengths = np.zeros(num_runs), np.zeros(num_runs, int)
    shape = vector_env.single_observation_space.shape

    def seed_of(run: int) -> int:
        return episode_seed(seeds[run], EpisodePurpose.EVAL, rounds[run] * num_episodes + int(episode[run]))

    everyone = list(range(num_runs))
    observations = envs.reset_runs(
        vector_env,
        np.zeros((num_runs,) + shape, envs.observation_dtype(vector_env.single_observation_space.dtype)),
        everyone,
        [seed_of(i) for i in everyone],
    )
    while (active := episode < num_episodes).any():
        empty = np.asarray([active[i] and not queues[i] for i in everyone])
        if empty.any():
            split = jax.vmap(jax.random.split)(keys)
            keys = np.where(empty[:, None], split[:, 0], keys)
            chunks = np.asarray(act(agents, observations, split[:, 1]))
            for index in np.flatnonzero(empty):
                queues[index] = list(chunks[index][:execution_length])
        actions = np.stack(
            [
                queue.pop(0) if on else np.zeros(vector_env.single_action_space.shape)
                for queue, on in zip(queues, active, strict=True)
            ]
        ).astype(np.float32)
        observations, rewards, terminated, truncated, infos = vector_env.step(actions)
        observations = envs.observation_array(observations)
        rendering = active & (episode < video_episodes)
        if rendering.any():
            images = vector_env.call("render")
            for index in np.flatnonzero(rendering):
                frames[index].append(images[index])
        returns += np.where(active, rewards, 0.0)
        lengths += active
        ended = [i for i in everyone if active[i] and (terminated[i] or truncated[i])]
        for index in ended:
            results[index]["success"].append(float(infos["success"][index]))
            results[index]["return"].append(float(returns[index]))
            results[index]["length"].append(int(lengths[index]))
            if frames[index]:
                videos[index].append(np.stack(frames[index]))
            frames[index], queues[index], returns[index], lengths[index] = [], [], 0.0, 0
            episode[index] += 1
        restart = [index for index in ended if episode[index] < num_episodes]
        observations = envs.reset_runs(vector_env, observations, restart, [seed_of(i) for i in restart])
    metrics = [
        {
            "eval/success": float(np.mean(result["success"])),
            "eval/episode_return": float(np.mean(result["return"])),
            "eval/episode_length": float(np.mean(result["length"])),
        }
        for result in results
    ]
    return metrics, videos
