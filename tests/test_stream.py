"""buffers/stream.py: a sharded dataset streamed through K segments of one device store, swapped, resumed."""

import gc
import os
import threading

import jax
import jax.numpy as jnp
import numpy as np
import psutil
import pytest
from omegaconf import OmegaConf

import buffers
from buffers.replay import Replay, concatenate
from buffers.stream import ShardStream, open_stream, shard_order
from tests import reference

DATASET = "cube-quadruple-play-v0"
TRANSITIONS, ROWS = 100, 102  # per tiny shard: 2 episodes of 51 steps (tests/conftest.py TINY_SHARDS)


def host(store) -> dict:
    return {key: np.asarray(value) for key, value in store.__dict__.items()}


def assert_stores_equal(actual, expected):
    for key, value in host(expected).items():
        np.testing.assert_array_equal(host(actual)[key], value, err_msg=key)


def resident_reference(paths, load) -> buffers.TransitionStore:
    """The store `from_dataset` makes of the resident shards back to back, in segment order."""
    return buffers.from_dataset(concatenate([load(path) for path in paths])[0])


def test_a_config_opens_its_stream(tiny_shards_cfg, shard_paths):
    cfg = OmegaConf.create({"env": OmegaConf.to_container(tiny_shards_cfg)})
    OmegaConf.update(cfg, "env.shards_in_memory", 3)
    with open_stream(cfg.env, seed=0) as stream:  # another shard size: the seed also names its directory
        store = stream.initial_store()
        assert stream.paths == shard_paths
        assert stream.resident() == [shard_paths[i] for i in shard_order(4, 0)[:3]]
        assert (store.capacity, store.obs_capacity, store.rewards.shape[0]) == (3 * TRANSITIONS, 3 * ROWS, 1)


def test_order_is_a_permutation_drawn_from_the_seed():
    assert sorted(shard_order(7, seed=3)) == list(range(7))
    np.testing.assert_array_equal(shard_order(7, seed=3), shard_order(7, seed=3))
    assert any(not np.array_equal(shard_order(7, 0), shard_order(7, seed)) for seed in range(1, 4))


def test_swaps_replace_the_oldest_segment_in_the_seeded_order(shard_paths, loader):
    with ShardStream(shard_paths, loader, seed=1, shards_in_memory=2) as stream:
        sequence = [shard_paths[index] for index in np.tile(shard_order(4, seed=1), 2)]
        store = stream.initial_store()
        assert stream.resident() == sequence[:2]
        assert_stores_equal(store, resident_reference(sequence[:2], loader))
        device_bytes = buffers.nbytes(store)
        for swap in range(1, 6):
            store = stream.swap(store)
            oldest_replaced = [sequence[swap + 1], sequence[swap]] if swap % 2 else sequence[swap : swap + 2]
            assert stream.position == swap and stream.resident() == oldest_replaced
            assert_stores_equal(store, resident_reference(oldest_replaced, loader))
            assert buffers.nbytes(store) == device_bytes


def test_chunks_stop_at_the_end_of_a_segment(shard_paths, loader):
    with ShardStream(shard_paths, loader, seed=0, shards_in_memory=2) as stream:
        store = stream.swap(stream.initial_store())  # segment 0 now holds a later shard than segment 1
        flat = concatenate([loader(path) for path in stream.resident()])[0]
    flat = {**flat, "rewards": flat["rewards"][0], "masks": flat["masks"][0]}
    chunk_length = 5
    starts = np.arange(TRANSITIONS - chunk_length, TRANSITIONS + 1)  # around the boundary of the segments
    batch = buffers.gather_chunks(store, jnp.asarray(starts), chunk_length, 0.9)
    for row, start in enumerate(starts):
        expected = reference.chunk(flat, int(start), chunk_length, 0.9)
        for key, value in expected.items():
            np.testing.assert_allclose(np.asarray(batch[key][row]), value, rtol=1e-6, err_msg=key)
    assert np.asarray(batch["valid"])[0].tolist() == [1, 1, 1, 1, 1]
    assert np.asarray(batch["valid"])[1].tolist() == [1, 1, 1, 1, 0]  # the segment's last transition ends it


def test_sampling_is_uniform_over_the_resident_shards(shard_paths, loader):
    with ShardStream(shard_paths, loader, seed=0, shards_in_memory=2) as stream:
        store = stream.initial_store()
    segment = buffers.Segment.whole(store)
    assert int(segment.size) == 2 * TRANSITIONS
    starts = np.asarray(buffers.sample_starts(store, jax.random.PRNGKey(0), 20_000, 5, segment))
    assert starts.min() == 0 and starts.max() == 2 * TRANSITIONS - 5
    assert abs(np.mean(starts < TRANSITIONS) - TRANSITIONS / (2 * TRANSITIONS - 4)) < 0.015


def test_the_next_shard_is_read_while_updates_run(shard_paths, loader):
    read = {path: threading.Event() for path in shard_paths}

    def recording_load(path):
        dataset = loader(path)
        read[path].set()
        return dataset

    with ShardStream(shard_paths, recording_load, seed=0, shards_in_memory=1) as stream:
        store = stream.initial_store()
        assert read[stream.path_of(1)].wait(timeout=30)  # read ahead, before any swap asks for it
        assert not read[stream.path_of(2)].is_set()
        store = stream.swap(store)
        assert read[stream.path_of(2)].wait(timeout=30)
        assert_stores_equal(store, resident_reference([stream.path_of(1)], loader))


def test_all_shards_resident_makes_swaps_free(shard_paths, loader):
    calls = []
    with ShardStream(shard_paths, lambda path: calls.append(path) or loader(path), 0, 4) as stream:
        store = stream.initial_store()
        before = host(store)
        for _ in range(5):
            store = stream.swap(store)
    assert len(calls) == 4 and stream.position == 5
    assert_stores_equal(store, buffers.TransitionStore(**before))


def test_restore_rebuilds_the_store_bit_for_bit_and_streams_the_same_shards(shard_paths, loader):
    with ShardStream(shard_paths, loader, seed=2, shards_in_memory=2) as stream:
        store = stream.initial_store()
        for _ in range(3):
            store = stream.swap(store)
        state, at_state = stream.state(), host(store)
        later = []
        for _ in range(3):
            store = stream.swap(store)
            later.append((stream.resident(), host(store)))
    assert state == {"position": 3, "resident": [path.name for path in stream.resident(3)]}

    with ShardStream(shard_paths, loader, seed=2, shards_in_memory=2) as resumed:
        store = resumed.restore(state)
        assert_stores_equal(store, buffers.TransitionStore(**at_state))
        for resident, expected in later:
            store = resumed.swap(store)
            assert resumed.resident() == resident
            assert_stores_equal(store, buffers.TransitionStore(**expected))


def test_restore_rejects_another_seed_or_shard_set(shard_paths, loader):
    with ShardStream(shard_paths, loader, seed=2, shards_in_memory=2) as stream:
        state = {**stream.state(), "position": 1}
        state["resident"] = [path.name for path in stream.resident(1)]
    with (
        ShardStream(shard_paths[::-1], loader, seed=2, shards_in_memory=2) as other,
        pytest.raises(ValueError, match="expected the same shard directory and seed"),
    ):
        other.restore(state)


def test_swapping_the_offline_store_leaves_online_data_untouched(shard_paths, loader):
    with ShardStream(shard_paths, loader, seed=0, shards_in_memory=1) as stream:
        offline = stream.initial_store()
        dataset = loader(shard_paths[3])
        transitions = {
            key: value[..., :30] if key in ("rewards", "masks") else value[:30]
            for key, value in dataset.items()
        }
        transitions = {**transitions, "rewards": transitions["rewards"][0], "masks": transitions["masks"][0]}
        for key in ("observations", "next_observations"):
            transitions[key] = transitions[key] + 1000.0  # online states tell themselves apart
        online = buffers.insert_many(
            buffers.empty(dataset["observations"].shape[1], dataset["actions"].shape[1], 64), transitions
        )
        replay = Replay(offline, online, buffers.Segment.whole(offline), None)
        online_before = host(replay.online)
        for _ in range(3):
            replay = replay.replace(offline=stream.swap(replay.offline))
            assert_stores_equal(replay.online, buffers.TransitionStore(**online_before))
        batch = replay.sample(jax.random.PRNGKey(0), 4096, 5, 0.99, online=True)
    from_online = np.asarray(batch["observations"]).min(axis=1) > 500
    assert abs(from_online.mean() - 26 / (96 + 26)) < 0.03  # uniform over 96 offline and 26 online starts


def test_memory_does_not_grow_with_the_number_of_shards(shard_paths, tmp_path, loader):
    """K = 1 over 40 shards: device bytes as for 10; host RSS after 40 swaps within a margin of after 10."""
    with np.load(shard_paths[0]) as file:
        big = {key: np.concatenate([file[key]] * 100) for key in file.files}  # 10,200 steps per shard
    files = []
    for copy in range(2):
        path = tmp_path / f"big-{copy}.npz"
        np.savez_compressed(path, **{**big, "observations": big["observations"] + copy})
        files.append(path)
    links = []
    for index in range(40):
        links.append(tmp_path / f"{DATASET}-{index:03d}.npz")
        links[-1].symlink_to(files[index % 2])

    def streamed_bytes(paths, swaps):
        with ShardStream(paths, loader, seed=0, shards_in_memory=1) as stream:
            store = stream.initial_store()
            for _ in range(swaps):
                store = stream.swap(store)
            return buffers.nbytes(store)

    assert streamed_bytes(links[:10], 10) == streamed_bytes(links, 40)
    process = psutil.Process(os.getpid())
    with ShardStream(links, loader, seed=0, shards_in_memory=1) as stream:
        store = stream.initial_store()
        shard_bytes = buffers.nbytes(store)
        rss = []
        for swaps in (10, 30):
            for _ in range(swaps):
                store = stream.swap(store)
            jax.block_until_ready(store)
            gc.collect()
            rss.append(process.memory_info().rss)
    growth = rss[1] - rss[0]
    print(
        f"shard store {shard_bytes / 2**20:.1f} MiB, RSS after 10 swaps {rss[0] / 2**20:.1f} MiB, "
        f"after 40 {rss[1] / 2**20:.1f} MiB"
    )
    assert growth < 2 * shard_bytes, (
        f"RSS grew {growth / 2**20:.1f} MiB over 30 swaps of a {shard_bytes} B shard"
    )
