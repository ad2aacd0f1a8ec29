"""Trajectory stores (buffers/trajectories.py): cut trajectories, returns-to-go, windows and the online replay
against plain Python."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from buffers import trajectories

OBS_DIM, ACTION_DIM = 3, 2


# ---- trajectories and windows -----------------------------------------------------------------------------


def hand_built_trajectories(seed=0):
    """Three stored trajectories: 4 steps without success; 7 steps with successes at steps 2 and 4 (cut after
    step 2); 3 steps with a success at the last step."""
    rng = np.random.default_rng(seed)
    lengths = (4, 7, 3)
    num = sum(lengths)
    terminals = np.concatenate([np.eye(length, dtype=np.float32)[-1] for length in lengths])
    masks = np.ones(num, np.float32)
    masks[[4 + 2, 4 + 4, 4 + 7 + 2]] = 0.0
    observations = rng.normal(size=(num, OBS_DIM)).astype(np.float32)
    return {
        "observations": observations,
        "next_observations": observations + 1.0,
        "actions": rng.uniform(-1, 1, (num, ACTION_DIM)).astype(np.float32),
        "rewards": -rng.integers(0, 3, num).astype(np.float32),
        "masks": masks,
        "terminals": terminals,
    }


def python_trajectories(data):
    """The cut trajectories as lists of steps, each step (observation, action, return-to-go, timestep)."""
    result, current, cut = [], [], False
    for t in range(len(data["rewards"])):
        if not cut:
            current.append(t)
            cut = data["masks"][t] == 0
        if data["terminals"][t] == 1:
            result.append(current)
            current, cut = [], False
    steps = []
    for indices in result:
        rewards = [data["rewards"][t] for t in indices]
        steps.append(
            [
                (data["observations"][t], data["actions"][t], sum(rewards[i:]), i)
                for i, t in enumerate(indices)
            ]
        )
    return steps


def test_returns_to_go_cuts_and_padding_match_python():
    data = hand_built_trajectories()
    store = trajectories.from_dataset(data, episode_limit=9)
    expected = python_trajectories(data)
    assert [len(t) for t in expected] == [4, 3, 3]
    assert store.max_length == 9 and int(store.count) == 3
    np.testing.assert_array_equal(store.lengths, [4, 3, 3])
    np.testing.assert_allclose(trajectories.trajectory_returns(store), [t[0][2] for t in expected])
    context_length = 3
    for slot, steps in enumerate(expected):
        for start in range(len(steps)):
            window = trajectories.gather_windows(
                store, jnp.asarray([slot]), jnp.asarray([start]), context_length
            )
            for k in range(context_length):
                valid = float(start + k < len(steps))
                padding = (np.zeros(OBS_DIM), np.zeros(ACTION_DIM), 0.0, 0)
                observation, action, return_to_go, timestep = steps[start + k] if valid else padding
                np.testing.assert_allclose(window["observations"][0, k], observation, rtol=1e-6)
                np.testing.assert_allclose(window["actions"][0, k], action, rtol=1e-6)
                assert float(window["returns_to_go"][0, k]) == pytest.approx(return_to_go)
                assert int(window["timesteps"][0, k]) == timestep and float(window["valid"][0, k]) == valid
    mean, std = trajectories.observation_statistics(data)
    np.testing.assert_allclose(mean, data["observations"].mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, data["observations"].std(0) + 1e-6, rtol=1e-5)


def test_windows_start_uniformly_over_all_stored_steps():
    data = hand_built_trajectories()
    store = trajectories.from_dataset(data)
    sample = jax.jit(trajectories.sample_windows, static_argnums=(2, 3))
    windows = sample(store, jax.random.PRNGKey(0), 20000, 2)
    observations = np.asarray(store.observations)
    starts = {
        tuple(np.round(observations[s, i], 5)): (s, i) for s in range(3) for i in range(int(store.lengths[s]))
    }
    counts = {}
    for row in np.asarray(windows["observations"][:, 0]):
        key = starts[tuple(np.round(row, 5))]
        counts[key] = counts.get(key, 0) + 1
    assert set(counts) == set(starts.values())  # every stored step starts windows, and nothing else
    frequencies = np.array(list(counts.values())) / 20000
    np.testing.assert_allclose(frequencies, 1 / len(starts), atol=0.015)  # so trajectories go by length


def test_online_replay_is_seeded_with_the_best_and_drops_the_oldest_first():
    data = hand_built_trajectories()
    offline = trajectories.from_dataset(data, episode_limit=5)
    returns = trajectories.trajectory_returns(offline)
    insert = jax.jit(trajectories.insert)
    replay = trajectories.best(offline, 2)
    np.testing.assert_allclose(np.asarray(replay.returns_to_go[:, 0]), np.sort(returns)[-2:])
    assert int(replay.count) == 2
    rewards = np.array([-1.0, -2.0, 0.0])
    new = trajectories.pad_trajectory(np.ones((3, OBS_DIM)), np.zeros((3, ACTION_DIM)), rewards, 5)
    replay = insert(replay, new)  # replaces the lower of the two seeds
    np.testing.assert_allclose(replay.returns_to_go[0], [-3.0, -2.0, 0.0, 0.0, 0.0])  # hindsight returns
    np.testing.assert_array_equal(replay.lengths, [3, 3])
    np.testing.assert_allclose(replay.returns_to_go[1, 0], np.sort(returns)[-1])
    replay = insert(
        replay, trajectories.pad_trajectory(np.ones((1, OBS_DIM)), np.zeros((1, ACTION_DIM)), [-5.0], 5)
    )
    np.testing.assert_array_equal(replay.lengths, [3, 1])  # then the best seed, then the first online one

    roomy = trajectories.best(offline, 5)
    assert int(roomy.count) == 3
    roomy = insert(roomy, new)
    seeds = np.asarray(offline.lengths)[np.argsort(returns, kind="stable")]
    np.testing.assert_array_equal(roomy.lengths, [*seeds, 3, 0])  # an empty slot is filled before any seed
    windows = trajectories.sample_windows(roomy, jax.random.PRNGKey(1), 256, 2)
    assert float(windows["valid"][:, 0].min()) == 1.0  # the empty slot is never drawn
    with pytest.raises(ValueError, match="a trajectory of 6 steps does not fit slots of max_length=5"):
        trajectories.pad_trajectory(np.ones((6, OBS_DIM)), np.zeros((6, ACTION_DIM)), np.zeros(6), 5)
