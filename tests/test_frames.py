"""The acting side of frame stacking (envs/frames.py): the stacks an agent acts on equal the replay's."""

import gymnasium
import jax.numpy as jnp
import numpy as np

import buffers
from buffers.chunks import gather_chunks
from envs.frames import with_frame_stack
from envs.vector import ReplayOnReset


class Frames(gymnasium.Env):
    """A 4x4 'camera' whose pixels show (reset seed, step); episodes end after `length` steps."""

    observation_space = gymnasium.spaces.Box(0, 255, (4, 4, 3), np.uint8)
    action_space = gymnasium.spaces.Box(-1, 1, (2,), np.float32)

    def __init__(self, length: int = 4):
        self.length, self.seed_, self.t = length, 0, 0

    def frame(self) -> np.ndarray:
        pixels = np.zeros((4, 4, 3), np.uint8)
        pixels[..., 0], pixels[..., 1] = self.seed_, self.t
        return pixels

    def reset(self, *, seed=None, options=None):
        self.seed_, self.t = seed, 0
        return self.frame(), {}

    def step(self, action):
        self.t += 1
        return self.frame(), float(self.t), False, self.t == self.length, {}


def test_one_frame_stack_is_the_env_itself():
    env = Frames()
    assert with_frame_stack(env, 1) is env


def test_acting_stacks_equal_the_samplers_stacks():
    k = 3
    env = with_frame_stack(Frames(), k)
    assert env.observation_space.shape == (4, 4, 9) and env.observation_space.dtype == np.uint8
    store = buffers.empty((4, 4, 3), 2, capacity=32, obs_dtype=jnp.uint8, frame_stack=k)
    seen = []
    for seed in (1, 2):
        observation, _ = env.reset(seed=seed)
        assert np.array_equal(observation, np.concatenate([env.unwrapped.frame()] * k, axis=-1))
        done = False
        while not done:
            next_observation, reward, terminated, truncated, _ = env.step(np.zeros(2, np.float32))
            done = terminated or truncated
            transition = {
                "observations": observation,
                "actions": np.zeros(2, np.float32),
                "rewards": np.float32(reward),
                "masks": np.float32(1.0),
                "terminals": np.float32(done),
                "next_observations": next_observation,
            }
            store = buffers.insert(store, transition)
            seen.append((observation, next_observation))
            observation = next_observation
    batch = gather_chunks(store, jnp.arange(len(seen)), 1, 0.9)
    np.testing.assert_array_equal(np.asarray(batch["observations"]), np.stack([o for o, _ in seen]))
    np.testing.assert_array_equal(
        np.asarray(batch["next_observations"][:, 0]), np.stack([n for _, n in seen])
    )


def test_replayed_actions_rebuild_the_stack_of_a_resumed_episode():
    env = ReplayOnReset(with_frame_stack(Frames(length=10), 3))
    env.reset(seed=5)
    for _ in range(4):
        expected, *_ = env.step(np.zeros(2, np.float32))
    env.pending_actions = [[0.0, 0.0]] * 4
    observation, _ = env.reset(seed=5)
    np.testing.assert_array_equal(observation, expected)
