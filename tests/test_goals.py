"""Goal-relabelled chunk batches (buffers/goals.py) against a NumPy loop; the goal sampling distribution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from buffers import goals
from tests import reference

DISCOUNT = 0.9


def hand_built(lengths=(6, 4, 7), obs_dim=2, goal_dim=3, action_dim=2, seed=0):
    """Trajectories of the given lengths (transitions) with distinct states, goal reps and actions."""
    rng = np.random.default_rng(seed)
    observations, next_observations, terminals = [], [], []
    for length in lengths:
        states = rng.normal(size=(length + 1, obs_dim)).astype(np.float32)
        observations.append(states[:-1])
        next_observations.append(states[1:])
        terminals.append(np.eye(length, dtype=np.float32)[-1])
    num = sum(lengths)
    return {
        "observations": np.concatenate(observations),
        "next_observations": np.concatenate(next_observations),
        "actions": rng.uniform(-1, 1, (num, action_dim)).astype(np.float32),
        "terminals": np.concatenate(terminals),
        "oracle_reps": rng.normal(size=(num, goal_dim)).astype(np.float32),
    }


# (start, goal): the current state, a goal inside the chunk, one past it, an earlier state, another
# trajectory, and starts whose chunk runs past their trajectory's end (toward its end or its last state).
CASES = [(0, 0), (0, 2), (0, 5), (3, 1), (1, 8), (4, 5), (5, 5), (5, 2), (8, 9), (9, 9), (9, 0), (12, 16)]


@pytest.mark.parametrize("chunk_length", [1, 3, 4])
def test_gather_goal_chunks_matches_the_loop(chunk_length):
    data = hand_built()
    store = goals.goal_store(data)
    starts, targets = (jnp.asarray([case[i] for case in CASES], jnp.int32) for i in (0, 1))
    batch = jax.jit(goals.gather_goal_chunks, static_argnums=(3,))(
        store, starts, targets, chunk_length, DISCOUNT
    )
    for row, (start, goal) in enumerate(CASES):
        expected = reference.goal_chunk(data, start, goal, chunk_length, DISCOUNT)
        for key, value in expected.items():
            np.testing.assert_allclose(np.asarray(batch[key][row]), value, rtol=1e-6, err_msg=f"{key} {row}")
    lengths = np.asarray(batch["backup_lengths"])
    assert lengths[0] == 0 and batch["backup_rewards"][0] == 1.0  # the goal is the start: reached at once
    if chunk_length == 4:
        assert lengths[1] == 2 and np.isclose(batch["backup_rewards"][1], DISCOUNT**2)
        assert lengths[2] == 4 and batch["backup_masks"][2] == 1.0  # goal beyond the chunk: bootstrap
        assert lengths[6] == 0 and np.asarray(batch["valid"][6]).tolist() == [1, 0, 0, 0]  # last transition


def test_goal_store_finds_each_trajectory_end():
    store = goals.goal_store(hand_built())
    np.testing.assert_array_equal(np.asarray(store.finals), [5] * 6 + [9] * 4 + [16] * 7)
    np.testing.assert_array_equal(np.asarray(store.trajectory_firsts), [0, 6, 10])
    np.testing.assert_array_equal(np.asarray(store.states(jnp.arange(17))), hand_built()["observations"])
    with pytest.raises(ValueError, match=r"'oracle_reps' has shape \(16, 3\), expected \(17, goal_dim\)"):
        goals.goal_store({**hand_built(), "oracle_reps": hand_built()["oracle_reps"][:-1]})


def test_starts_are_uniform_over_chunks_inside_their_trajectory():
    store = goals.goal_store(hand_built())
    starts = np.asarray(goals.sample_starts(store, jax.random.PRNGKey(0), 30000, 3))
    valid = [0, 1, 2, 6, 10, 11, 12, 13]  # t + 3 <= f(t): trajectories of 6, 4 and 7 transitions
    assert set(starts.tolist()) == set(valid)
    counts = np.bincount(starts, minlength=17)[valid]
    np.testing.assert_allclose(counts / len(starts), 1 / len(valid), atol=0.01)


def test_goal_probabilities_and_future_rule():
    data = hand_built(lengths=(40,) * 25)  # many trajectories: a random goal rarely lands on the start's
    store = goals.goal_store(data)
    chunk_length, size = 5, 40000
    replay = goals.make_goal_replay(data)
    key_starts, key_goals = jax.random.split(jax.random.PRNGKey(1))
    starts = goals.sample_starts(store, key_starts, size, chunk_length)
    sampled = np.asarray(goals.sample_goals(store, key_goals, starts, chunk_length))
    starts, finals = np.asarray(starts), np.asarray(store.finals)[np.asarray(starts)]
    current = sampled == starts
    future = (sampled > starts) & (sampled <= finals)
    other = ~current & ~future
    same_trajectory_chance = 1 / 25  # a random goal in the start's trajectory (half of it after the start)
    np.testing.assert_allclose(current.mean(), 0.2, atol=0.01)
    np.testing.assert_allclose(future.mean(), 0.5 + 0.3 * same_trajectory_chance / 2, atol=0.012)
    np.testing.assert_allclose(other.mean(), 0.3 * (1 - same_trajectory_chance / 2), atol=0.012)
    # random goals are starts too (t + H <= f), as in the reference
    random_finals = np.asarray(store.finals)[sampled[other]]
    assert np.all(sampled[other] + chunk_length <= random_finals)
    # future goals: uniform over [t + 1, f] up to rounding, which gives each end half the mass
    offsets = (sampled[future] - starts[future] - 1) / (finals[future] - starts[future] - 1)
    np.testing.assert_allclose(offsets.mean(), 0.5, atol=0.02)
    interior = np.bincount(np.minimum((offsets * 4).astype(int), 3), minlength=4) / len(offsets)
    np.testing.assert_allclose(interior, 0.25, atol=0.03)
    batch = jax.jit(replay.sample, static_argnums=(1, 2, 3, 4))(jax.random.PRNGKey(2), 64, 5, 0.99, False)
    assert batch["observations"].shape == (64, 5) and batch["actions"].shape == (64, 5, 2)
    assert float(batch["valid"].min()) == 1.0  # starts keep the whole chunk inside the trajectory
    with pytest.raises(ValueError, match="offline dataset only: expected online=False"):
        replay.sample(jax.random.PRNGKey(2), 64, 5, 0.99, True)
