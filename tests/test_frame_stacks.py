"""Frames stored once as uint8 and stacked by index in the chunk sampler (buffers/store.py,
buffers/chunks.py), against a slow NumPy reference of FQL's frame stacking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import buffers
from buffers.chunks import gather_chunks
from envs.observations import observation_array

LENGTHS = (5, 1, 3, 7)  # transitions per episode
SIZE = 8  # frame side; a frame's pixels encode (episode, step)


def frame(episode: int, step: int) -> np.ndarray:
    pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = episode, step, 200
    return pixels


def pixel_dataset(lengths=LENGTHS) -> dict:
    keys = ("observations", "next_observations", "actions", "rewards", "masks", "terminals")
    data = {key: [] for key in keys}
    for episode, length in enumerate(lengths):
        for step in range(length):
            data["observations"].append(frame(episode, step))
            data["next_observations"].append(frame(episode, step + 1))
            data["actions"].append([episode, step])
            data["rewards"].append(float(step))
            data["masks"].append(1.0)
            data["terminals"].append(float(step == length - 1))
    return {
        key: np.asarray(value, np.uint8 if "observations" in key else np.float32)
        for key, value in data.items()
    }


def reference_stack(episode: int, step: int, k: int) -> np.ndarray:
    """FQL's rule: the last k frames, oldest first, frames before the episode's first repeating it."""
    return np.concatenate([frame(episode, max(step - lag, 0)) for lag in range(k - 1, -1, -1)], axis=-1)


def reference_chunks(lengths, starts, chunk_length: int, k: int) -> dict:
    index = [(episode, step) for episode, length in enumerate(lengths) for step in range(length)]
    observations, next_observations = [], []
    for start in starts:
        observations.append(reference_stack(*index[start], k))
        next_observations.append(
            [reference_stack(index[t][0], index[t][1] + 1, k) for t in range(start, start + chunk_length)]
        )
    return {"observations": np.stack(observations), "next_observations": np.stack(next_observations)}


@pytest.mark.parametrize("k", [1, 3, 4])
def test_offline_stacks_follow_episode_starts_and_ends(k):
    store = buffers.from_dataset(pixel_dataset(), frame_stack=k)
    assert store.observations.dtype == jnp.uint8 and store.observations.shape[1:] == (SIZE, SIZE, 3)
    chunk_length = 4
    starts = np.arange(sum(LENGTHS) - chunk_length + 1)
    batch = jax.jit(gather_chunks, static_argnums=(2, 3))(store, jnp.asarray(starts), chunk_length, 0.9)
    expected = reference_chunks(LENGTHS, starts, chunk_length, k)
    for key in ("observations", "next_observations"):
        assert batch[key].dtype == jnp.uint8
        np.testing.assert_array_equal(np.asarray(batch[key]), expected[key])
    assert batch["observations"].shape == (len(starts), SIZE, SIZE, 3 * k)
    assert batch["next_observations"].shape == (len(starts), chunk_length, SIZE, SIZE, 3 * k)
    # the other keys are the state path's, untouched by stacking
    plain = gather_chunks(buffers.from_dataset(pixel_dataset()), jnp.asarray(starts), chunk_length, 0.9)
    for key in ("actions", "rewards", "masks", "terminals", "valid"):
        np.testing.assert_array_equal(np.asarray(batch[key]), np.asarray(plain[key]))


@pytest.mark.parametrize("k, chunk_length", [(3, 1), (4, 2), (3, 4)])
def test_the_last_next_observation_alone_is_the_reference_last_step(k, chunk_length):
    """every_next=False, what a TD target reads: the stacked observation and the last step's stacked next
    observation from one gather, across episode starts and ends, with frames shared by both (h < k) or
    not; every other key as the full batch's."""
    store = buffers.from_dataset(pixel_dataset(), frame_stack=k)
    starts = np.arange(sum(LENGTHS) - chunk_length + 1)
    last = gather_chunks(store, jnp.asarray(starts), chunk_length, 0.9, every_next=False)
    every = gather_chunks(store, jnp.asarray(starts), chunk_length, 0.9)
    expected = reference_chunks(LENGTHS, starts, chunk_length, k)
    assert last["next_observations"].shape == (len(starts), 1, SIZE, SIZE, 3 * k)
    np.testing.assert_array_equal(
        np.asarray(last["next_observations"]), expected["next_observations"][:, -1:]
    )
    np.testing.assert_array_equal(np.asarray(last["observations"]), expected["observations"])
    for key in ("actions", "rewards", "masks", "terminals", "valid"):
        np.testing.assert_array_equal(np.asarray(last[key]), np.asarray(every[key]))


def test_online_inserts_of_stacked_observations_sample_as_the_offline_rule():
    """The engine hands the store what the agent acted on (stacks); the store keeps the newest frame and
    samples the same stacks as the offline store of the same episodes."""
    k, chunk_length = 3, 2
    data = pixel_dataset()
    online = buffers.empty((SIZE, SIZE, 3), 2, capacity=64, obs_dtype=jnp.uint8, frame_stack=k)
    index = [(episode, step) for episode, length in enumerate(LENGTHS) for step in range(length)]
    transitions = {
        "observations": np.stack([reference_stack(e, s, k) for e, s in index]),
        "next_observations": np.stack([reference_stack(e, s + 1, k) for e, s in index]),
        **{key: data[key] for key in ("actions", "rewards", "masks", "terminals")},
    }
    online = jax.jit(buffers.insert_many)(online, transitions)
    offline = buffers.from_dataset(data, frame_stack=k)
    starts = jnp.arange(sum(LENGTHS) - chunk_length + 1)
    for every_next in (True, False):
        sampled = gather_chunks(online, starts, chunk_length, 0.9, every_next=every_next)
        expected = gather_chunks(offline, starts, chunk_length, 0.9, every_next=every_next)
        jax.tree_util.tree_map(np.testing.assert_array_equal, sampled, expected)


def test_a_wrapped_ring_repeats_its_oldest_live_frame():
    """Frames whose rows were overwritten are never handed out: the oldest live one stands in."""
    k = 3
    online = buffers.empty((SIZE, SIZE, 3), 2, capacity=4, max_episodes=1, obs_dtype=jnp.uint8, frame_stack=k)
    data = pixel_dataset((9,))
    online = buffers.insert_many(online, {key: value for key, value in data.items()})
    batch = gather_chunks(online, online.oldest + jnp.arange(online.size), 1, 0.9, every_next=False)
    oldest_step = int(online.oldest)
    for row, t in enumerate(range(oldest_step, 9)):
        expected = np.concatenate([frame(0, max(t - lag, oldest_step)) for lag in (2, 1, 0)], axis=-1)
        np.testing.assert_array_equal(np.asarray(batch["observations"][row]), expected)
        following = np.concatenate([frame(0, max(t + 1 - lag, oldest_step)) for lag in (2, 1, 0)], axis=-1)
        np.testing.assert_array_equal(np.asarray(batch["next_observations"][row, 0]), following)


def test_observation_array_keeps_frames_uint8_and_states_float32():
    assert observation_array(np.zeros((2, 4, 4, 3), np.uint8)).dtype == np.uint8
    assert observation_array(np.zeros((2, 5), np.float64)).dtype == np.float32
    assert observation_array([[1, 2]]).dtype == np.float32


def test_bytes_per_transition_keep_one_uint8_frame():
    store = buffers.from_dataset(pixel_dataset(), frame_stack=3)
    frames = sum(LENGTHS) + len(LENGTHS)  # one row per state, the final state of each episode included
    assert store.observations.nbytes == frames * SIZE * SIZE * 3


def test_benchmark_reports_one_uint8_frame_per_transition():
    from launch.benchmark import bench_frames

    figures = bench_frames(num=1000, batch_size=8, chunk_length=5, frame_stack=3, repeats=1)
    # 1000 frames + the final one, an int32 row index, 5 float32 actions, a reward, a mask, a terminal
    expected = (1001 * 64 * 64 * 3 + 1000 * (4 + 20 + 4 + 1 + 1) + 3 * 4) / 1000
    assert figures["store_bytes_per_transition"] == round(expected, 1)
