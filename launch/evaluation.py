"""Evaluation rollouts: chunks executed open-loop, success read at each episode's last step."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import jax
import numpy as np

ActFn = Callable[[object, np.ndarray, jax.Array], jax.Array]


def episode_seed(seed: int, purpose: int, index: int) -> int:
    """A reset seed fixed by (run seed, purpose, episode index), so resumed runs replay the same episodes."""
    return int(np.random.SeedSequence([seed, purpose, index]).generate_state(1)[0])


def evaluate(
    act: ActFn,
    agent,
    env,
    num_episodes: int,
    seed: int,
    round_index: int,
    video_episodes: int = 0,
) -> tuple[dict[str, float], list[np.ndarray]]:
    """Mean eval/success, eval/episode_return, eval/episode_length over `num_episodes` episodes.

    `act(agent, observations (1, obs_dim), key)` returns (1, steps, action_dim); its steps are executed
    before the policy is queried again. The first `video_episodes` episodes are rendered.
    """
    key = jax.random.fold_in(jax.random.PRNGKey(seed), round_index)
    successes, returns, lengths, videos = [], [], [], []
    for episode in range(num_episodes):
        observation, info = env.reset(seed=episode_seed(seed, 1, round_index * num_episodes + episode))
        queue: deque = deque()
        frames = []
        episode_return, length, done = 0.0, 0, False
        while not done:
            if not queue:
                key, act_key = jax.random.split(key)
                queue.extend(np.asarray(act(agent, observation[None], act_key))[0])
            observation, reward, terminated, truncated, info = env.step(queue.popleft())
            episode_return += float(reward)
            length += 1
            done = terminated or truncated
            if episode < video_episodes:
                frames.append(env.render())
        successes.append(float(info["success"]))
        returns.append(episode_return)
        lengths.append(length)
        if frames:
            videos.append(np.stack(frames))
    metrics = {
        "eval/success": float(np.mean(successes)),
        "eval/episode_return": float(np.mean(returns)),
        "eval/episode_length": float(np.mean(lengths)),
    }
    return metrics, videos
