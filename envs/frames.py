"""Frame stacking for acting: what a visual agent sees at each step is its env's last K frames concatenated
on the channel axis, oldest first, the episode's first frame repeated before it (FQL's FrameStackWrapper).

The replay stores one frame per state and forms the same stacks by index (buffers/chunks.py); the tests
check that both give the same stacks.
"""

from __future__ import annotations

import collections

import gymnasium
import numpy as np


class FrameStack(gymnasium.ObservationWrapper):
    """Observations of `env` as stacks of its last `num_frames` frames on the last axis."""

    def __init__(self, env: gymnasium.Env, num_frames: int):
        super().__init__(env)
        self.frames: collections.deque = collections.deque(maxlen=num_frames)
        space = env.observation_space
        self.observation_space = gymnasium.spaces.Box(
            low=np.concatenate([space.low] * num_frames, axis=-1),
            high=np.concatenate([space.high] * num_frames, axis=-1),
            dtype=space.dtype,
        )

    def reset(self, *, seed=None, options=None):
        observation, info = self.env.reset(seed=seed, options=options)
        self.frames.extend([observation] * self.frames.maxlen)
        return np.concatenate(self.frames, axis=-1), info

    def observation(self, observation):
        self.frames.append(observation)
        return np.concatenate(self.frames, axis=-1)


def with_frame_stack(env: gymnasium.Env, num_frames: int) -> gymnasium.Env:
    """`env` stacking `num_frames` frames; `env` itself for 1."""
    return env if num_frames == 1 else FrameStack(env, num_frames)
