"""Chunk gathering, sampling and the ring buffer against the plain-loop reference of the spec."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import buffers
from tests import reference

DISCOUNT = 0.9


def hand_built(lengths=(4, 3, 6), obs_dim=2, action_dim=2, seed=0):
    """Trajectories of the given lengths with a success (mask 0) in the middle of the last one."""
    rng = np.random.default_rng(seed)
    observations, next_observations, terminals = [], [], []
    for length in lengths:
        states = rng.normal(size=(length + 1, obs_dim)).astype(np.float32)
        observations.append(states[:-1])
        next_observations.append(states[1:])
        terminals.append(np.eye(length, dtype=np.float32)[-1])
    num = sum(lengths)
    masks = np.ones(num, np.float32)
    masks[num - 3] = 0.0  # a success three steps before the end: a chunk can cross it
    return {
        "observations": np.concatenate(observations),
        "next_observations": np.concatenate(next_observations),
        "actions": rng.uniform(-1, 1, (num, action_dim)).astype(np.float32),
        "rewards": rng.normal(size=num).astype(np.float32),
        "masks": masks,
        "terminals": np.concatenate(terminals),
    }


def assert_chunks_match(batch: dict, flat: dict, starts, chunk_length: int):
    for row, start in enumerate(starts):
        expected = reference.chunk(flat, int(start), chunk_length, DISCOUNT)
        for key, value in expected.items():
            np.testing.assert_allclose(np.asarray(batch[key][row]), value, rtol=1e-6, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("chunk_length", [1, 3, 5])
def test_gather_matches_reference_at_every_start(chunk_length):
    data = hand_built()
    store = buffers.from_dataset(data)
    starts = np.arange(len(data["rewards"]) - chunk_length + 1)  # includes the last index whose chunk fits
    batch = buffers.gather_chunks(store, jnp.asarray(starts), chunk_length, DISCOUNT)
    assert batch["actions"].shape == (len(starts), chunk_length, 2)
    assert batch["next_observations"].shape == (len(starts), chunk_length, 2)
    assert_chunks_match(batch, data, starts, chunk_length)


def test_gather_crossing_trajectory_end_and_success():
    data = hand_built()
    batch = buffers.gather_chunks(buffers.from_dataset(data), jnp.asarray([2, 8]), 4, DISCOUNT)
    # start 2 of trajectory 0 (length 4): steps 0, 1 belong to it, steps 2, 3 to trajectory 1
    np.testing.assert_array_equal(batch["valid"][0], [1, 1, 0, 0])
    np.testing.assert_array_equal(batch["terminals"][0], [0, 1, 1, 1])
    # start 8 in trajectory 2 covers the success at index 10: masks drop to 0 there and stay 0
    np.testing.assert_array_equal(batch["masks"][1], [1, 1, 0, 0])
    np.testing.assert_array_equal(batch["valid"][1], [1, 1, 1, 1])


def test_next_observations_are_not_stored_twice():
    rng = np.random.default_rng(0)
    num, obs_dim, action_dim, length = 20_000, 40, 5, 1000
    states = rng.normal(size=(num + num // length, obs_dim)).astype(np.float32)
    keep = np.ones(len(states), bool)
    keep[length :: length + 1] = False
    observations = states[keep]
    next_observations = states[np.roll(keep, 1)]
    data = {
        "observations": observations,
        "next_observations": next_observations,
        "actions": rng.uniform(-1, 1, (num, action_dim)).astype(np.float32),
        "rewards": np.zeros(num, np.float32),
        "masks": np.ones(num, np.float32),
        "terminals": np.tile(np.eye(length, dtype=np.float32)[-1], num // length),
    }
    both_layout = sum(np.asarray(v, np.float32).nbytes for v in data.values())
    store = buffers.from_dataset(data)
    assert buffers.nbytes(store) <= 0.55 * both_layout
    starts = jnp.asarray([0, length - 2, num - 3])
    assert_chunks_match(buffers.gather_chunks(store, starts, 3, DISCOUNT), data, np.asarray(starts), 3)


def test_inconsistent_next_observations_are_rejected():
    data = hand_built()
    data["next_observations"] = data["next_observations"].copy()
    data["next_observations"][1] += 1.0
    with pytest.raises(ValueError, match=r"next_observations\[1\] differs from observations\[2\]"):
        buffers.from_dataset(data)


def test_mismatched_lengths_are_rejected():
    data = hand_built()
    data["rewards"] = data["rewards"][:-1]
    with pytest.raises(ValueError, match="'rewards' has 12 rows, observations has 13"):
        buffers.from_dataset(data)


def insert_all(store, data):
    step = jax.jit(buffers.insert)
    for t in range(len(data["rewards"])):
        store = step(store, {key: jnp.asarray(value[t]) for key, value in data.items()})
    return store


@pytest.mark.parametrize(("capacity", "max_episodes"), [(40, 5), (7, 3), (9, 1)])
def test_ring_buffer_matches_reference_after_wrapping(capacity, max_episodes):
    data = hand_built(lengths=(4, 3, 6, 5, 2, 7))
    store = insert_all(buffers.empty(2, 2, capacity, max_episodes=max_episodes), data)
    num = len(data["rewards"])
    oldest, count = int(store.oldest), int(store.count)
    assert count == num
    assert 0 < store.size <= capacity
    # The live transitions are the most recent ones; their chunks follow the flat-array spec.
    chunk_length = 2
    starts = np.arange(oldest, count - chunk_length + 1)
    batch = buffers.gather_chunks(store, jnp.asarray(starts), chunk_length, DISCOUNT)
    assert_chunks_match(batch, data, starts, chunk_length)


def test_ring_buffer_with_few_rows_drops_stale_states():
    data = hand_built(lengths=(2, 2, 2, 2, 2, 2))
    store = insert_all(buffers.empty(2, 2, capacity=10, max_episodes=1), data)
    # 11 observation rows cannot hold 10 transitions of 2-step episodes (3 rows each): fewer stay live.
    assert int(store.size) < 10
    first_live_row = int(store.rows_written) - store.obs_capacity
    live_rows = np.asarray(store.obs_rows)[np.arange(int(store.oldest), int(store.count)) % store.capacity]
    assert live_rows.min() >= first_live_row


def test_sample_starts_cover_exactly_the_fitting_indices():
    data = hand_built()
    store = buffers.from_dataset(data)
    starts = np.asarray(buffers.sample_starts(store, jax.random.PRNGKey(0), 20_000, 5))
    assert set(starts.tolist()) == set(range(len(data["rewards"]) - 5 + 1))


def test_mixed_batches_take_the_requested_share_from_each_store():
    offline = hand_built()
    offline["rewards"] = np.zeros_like(offline["rewards"])
    online = hand_built(seed=1)
    online["rewards"] = np.ones_like(online["rewards"])
    batch = buffers.sample_mixed(
        buffers.from_dataset(offline),
        insert_all(buffers.empty(2, 2, 50), online),
        jax.random.PRNGKey(0),
        256,
        1,
        DISCOUNT,
        0.5,
    )
    source = np.asarray(batch["rewards"][:, 0])
    assert (source == 0).sum() == 128 and (source == 1).sum() == 128
    assert np.all(source[:128] == 0)


def test_each_run_of_a_replay_takes_its_own_offline_share():
    """offline_ratio=[0.25, 0.75] over a vector: each run's batch is the one-run batch of its own ratio."""
    offline = hand_built()
    offline["rewards"] = np.zeros_like(offline["rewards"])
    online = hand_built(seed=1)
    online["rewards"] = np.ones_like(online["rewards"])
    replay = buffers.make_replay([offline], [0, 0], [0, 0], 50, 50, [0.25, 0.75])
    steps = {key: np.broadcast_to(value, (2, *value.shape)) for key, value in online.items()}
    replay = replay.with_run_part(
        jax.vmap(lambda part, t: replay.with_run_part(part).insert(t).run_part())(replay.run_part(), steps)
    )
    keys = jnp.stack([jax.random.PRNGKey(0), jax.random.PRNGKey(0)])
    batches = jax.vmap(lambda part, key: replay.with_run_part(part).sample(key, 64, 1, DISCOUNT, True))(
        replay.run_part(), keys
    )
    for run, share in enumerate((16, 48)):
        source = np.asarray(batches["rewards"][run, :, 0])
        assert np.all(source[:share] == 0) and np.all(source[share:] == 1)
        alone = replay.of_run(run).sample(keys[run], 64, 1, DISCOUNT, True)
        jax.tree_util.tree_map(lambda a, b, run=run: np.testing.assert_array_equal(a[run], b), batches, alone)


def test_pooled_sampling_is_uniform_over_both_stores():
    """As from one pool: each start of the offline data and of the online data equally likely."""
    offline = hand_built()
    offline["rewards"] = np.zeros_like(offline["rewards"])
    online = hand_built(lengths=(3, 4), seed=2)
    online["rewards"] = np.ones_like(online["rewards"])
    online_store = insert_all(buffers.empty(2, 2, 50), online)
    batch = buffers.sample_pooled(
        buffers.from_dataset(offline), online_store, jax.random.PRNGKey(0), 40_000, 2, DISCOUNT
    )
    offline_starts, online_starts = len(offline["rewards"]) - 1, len(online["rewards"]) - 1
    share = float(np.mean(np.asarray(batch["rewards"][:, 0]) == 1))
    assert share == pytest.approx(online_starts / (offline_starts + online_starts), abs=0.01)
    # Every row is a real chunk of the store it came from.
    from_online = np.asarray(batch["rewards"][:, 0]) == 1
    for row in np.flatnonzero(from_online)[:20]:
        start = int(
            np.flatnonzero((online["observations"] == np.asarray(batch["observations"][row])).all(-1))[0]
        )
        assert_chunks_match(jax.tree_util.tree_map(lambda x, r=row: x[r : r + 1], batch), online, [start], 2)


def test_replay_segments_sample_their_own_dataset_and_task():
    """A vector's runs share one offline store: each samples its dataset and reads its task's rewards."""
    first, second = hand_built(), hand_built(lengths=(5, 5), seed=3)
    for data, scale in ((first, 1.0), (second, 10.0)):
        num = len(data["rewards"])
        data["rewards"] = np.stack([np.full(num, scale), np.full(num, 2 * scale)]).astype(np.float32)
        data["masks"] = np.ones((2, num), np.float32)
    replay = buffers.make_replay([first, second], [0, 1, 1], [1, 0, 1], 10, 10, None)
    assert replay.online.actions.shape[0] == 3 and replay.offline.rewards.shape == (2, 23)

    def sample(segment):
        return replay.replace(segment=segment).sample(jax.random.PRNGKey(0), 500, 1, DISCOUNT, False)

    batches = jax.vmap(sample)(replay.segment)
    np.testing.assert_array_equal(np.unique(batches["rewards"][0]), [2.0])
    np.testing.assert_array_equal(np.unique(batches["rewards"][1]), [10.0])
    np.testing.assert_array_equal(np.unique(batches["rewards"][2]), [20.0])
    second_states = {tuple(row) for row in second["observations"]}
    assert all(tuple(row) in second_states for row in np.asarray(batches["observations"][1]))


@pytest.mark.parametrize(("capacity", "max_episodes"), [(40, 5), (7, 3), (9, 1)])
def test_a_grown_ring_buffer_keeps_its_live_transitions_and_goes_on(capacity, max_episodes):
    """Grown mid-episode (a resumed run whose online_steps grew), then filled: every live chunk is the
    flat-array spec's, the ones before the growth included."""
    data = hand_built(lengths=(4, 3, 6, 5, 2, 7))
    before = {key: value[:15] for key, value in data.items()}
    after = {key: value[15:] for key, value in data.items()}
    small = insert_all(buffers.empty(2, 2, capacity, max_episodes=max_episodes), before)
    grown = jax.jit(buffers.store.grow)(small, buffers.empty(2, 2, 60, max_episodes=8))
    assert (int(grown.count), int(grown.oldest)) == (int(small.count), int(small.oldest))
    for store, end in ((grown, 15), (insert_all(grown, after), len(data["rewards"]))):
        starts = np.arange(int(small.oldest), end - 1)
        batch = buffers.gather_chunks(store, jnp.asarray(starts), 2, DISCOUNT)
        assert_chunks_match(batch, data, starts, 2)
