"""Sharded datasets: layout, checks, loading, streaming through K segments, resume, memory, generation."""

import gc
import os
import shutil
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import ogbench
import psutil
import pytest
from omegaconf import OmegaConf

import buffers
from buffers.replay import Replay, concatenate
from envs import DatasetError
from envs import shards as shards_module
from envs.config import EnvConfig
from envs.generate import generate_dataset
from envs.robomimic import is_robomimic
from envs.shards import (
    ShardLoader,
    ShardStream,
    check_equal_shards,
    find_shards,
    generate_shards,
    locate_shards,
    open_stream,
    shard_order,
    shard_seed,
    sharded_dir,
)
from launch.engine import settings
from tests import reference
from tests.helpers import compose_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DATASET = "cube-quadruple-play-v0"
TASK2 = "cube-quadruple-play-singletask-task2-v0"
TRANSITIONS, ROWS = 100, 102  # per tiny shard: 2 episodes of 51 steps (tests/conftest.py TINY_SHARDS)


@pytest.fixture(scope="module")
def shard_paths(tiny_shards_cfg):
    return locate_shards(tiny_shards_cfg, seed=0)


@pytest.fixture(scope="module")
def loader():
    return ShardLoader([TASK2], sparse=False)


def host(store) -> dict:
    return {key: np.asarray(value) for key, value in store.__dict__.items()}


def assert_stores_equal(actual, expected):
    for key, value in host(expected).items():
        np.testing.assert_array_equal(host(actual)[key], value, err_msg=key)


def resident_reference(paths, load) -> buffers.TransitionStore:
    """The store `from_dataset` makes of the resident shards back to back, in segment order."""
    return buffers.from_dataset(concatenate([load(path) for path in paths])[0])


def touch(directory: Path, *names: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(b"")
    return directory


# --- layout ------------------------------------------------------------------------------------------------


def test_shards_are_ordered_by_integer_index_whatever_the_padding(tmp_path):
    names = [f"{DATASET}-{index}.npz" for index in (0, 2, 10)] + [
        f"{DATASET}-{index:03d}.npz" for index in (1, 3)
    ]
    names += [f"{DATASET}-{index:02d}.npz" for index in range(4, 10)]
    ignored = [
        f"{DATASET}-val.npz",
        f"{DATASET}-003-val.npz",
        "cube-triple-play-v0-011.npz",
        f"{DATASET}.npz",
    ]
    directory = touch(tmp_path / "set", *names, *ignored)
    found = find_shards(directory, DATASET)
    assert [int(path.stem.rsplit("-", 1)[1]) for path in found] == list(range(11))


@pytest.mark.parametrize(
    "indices, message",
    [
        (("0", "1", "001", "2"), "shard index 1 appears twice"),
        (("0", "1", "3", "5"), r"expected shards 0 \.\. 5 with no gap, found 4; missing indices 2, 4"),
        ((), rf"expected shards '{DATASET}-<i>\.npz' \(i = 0, 1, \.\.\.\), found none"),
    ],
)
def test_duplicate_missing_or_no_shards_name_the_directory(tmp_path, indices, message):
    directory = touch(
        tmp_path / "set", *(f"{DATASET}-{index}.npz" for index in indices), f"{DATASET}-val.npz"
    )
    with pytest.raises(DatasetError, match=message) as error:
        find_shards(directory, DATASET)
    assert str(error.value).startswith(str(directory))


def test_no_shard_says_how_to_generate_or_download(tmp_path):
    cfg = OmegaConf.create({"env": OmegaConf.load(CONFIGS / "env/cube_quadruple_100m.yaml")})
    OmegaConf.update(cfg, "env.dataset_dir", str(tmp_path))
    directory = tmp_path / "cube-quadruple-play-100m-v0"
    with pytest.raises(DatasetError, match="found none") as error:
        locate_shards(cfg.env, seed=0)
    message = str(error.value)
    assert message.startswith(str(directory))
    assert f"python launch/make_dataset.py env.name={TASK2} env.dataset_size=100m" in message
    assert f"ogbench/{directory.name}/" in message  # the published set can be downloaded, a tiny one cannot
    tiny = OmegaConf.create({"env": OmegaConf.to_container(cfg.env)})
    OmegaConf.update(tiny, "env.generate.num_episodes", 2)
    with pytest.raises(DatasetError, match="found none") as error:
        locate_shards(tiny.env, seed=3)
    assert "env.generate.num_episodes=2 seed=3 env.generate.num_shards=N" in str(error.value)
    assert "ogbench/" not in str(error.value)


def test_sized_sets_get_their_own_directory(tiny_shards_cfg, tmp_path):
    assert sharded_dir(tiny_shards_cfg, 0).name == "cube-quadruple-play-100m-v0-ep2-len51-s0"
    cfg = OmegaConf.create({"env": OmegaConf.load(CONFIGS / "env/cube_quadruple_100m.yaml")})
    OmegaConf.update(cfg, "env.dataset_dir", str(tmp_path))
    OmegaConf.update(cfg, "env.dataset_size", "1b")
    assert sharded_dir(cfg.env, 0) == tmp_path / "cube-quadruple-play-1b-v0"


def test_unreadable_or_odd_shard_is_named(shard_paths, tmp_path, loader):
    directory = tmp_path / "set"
    directory.mkdir()
    for path in shard_paths:
        shutil.copy(path, directory / path.name)
    copies = find_shards(directory, DATASET)

    with np.load(shard_paths[2]) as file:
        one_episode = {key: file[key][:51] for key in file.files}
    np.savez_compressed(copies[2], **one_episode)
    with pytest.raises(DatasetError, match=f"{copies[2]}: 51 steps in 1 episodes, but .*-000.npz has 102"):
        check_equal_shards(copies)
    # a set that skipped the up-front check still fails, naming the shard that differs from the first
    stream = ShardStream([copies[0], copies[2]], loader, seed=0, shards_in_memory=1)
    store = stream.initial_store()
    with pytest.raises(DatasetError, match=f"{stream.path_of(1)}: .* state rows, but the other shards"):
        stream.swap(store)
    stream.close()

    copies[1].write_bytes(copies[1].read_bytes()[:300])
    with pytest.raises(DatasetError, match=f"{copies[1]} cannot be read as a shard .* delete it and regen"):
        check_equal_shards(copies, "regenerate it")
    with pytest.raises(DatasetError, match=f"{copies[1]} cannot be read .* corrupt: delete it and regen"):
        ShardLoader([TASK2], sparse=False, how_to_fix="regenerate it")(copies[1])


# --- loading -----------------------------------------------------------------------------------------------


def test_a_shard_loads_as_ogbench_loads_and_relabels_it(shard_paths):
    tasks = [f"cube-quadruple-play-singletask-task{task}-v0" for task in (2, 4)]
    dataset = ShardLoader(tasks, sparse=False)(shard_paths[1])
    assert dataset["rewards"].shape == dataset["masks"].shape == (2, TRANSITIONS)
    for row, name in enumerate(tasks):
        _, expected, _ = ogbench.make_env_and_datasets(name, dataset_path=str(shard_paths[1]))
        for key in ("observations", "actions", "terminals", "next_observations"):
            np.testing.assert_array_equal(dataset[key], expected[key], err_msg=key)
        np.testing.assert_array_equal(dataset["rewards"][row], expected["rewards"])
        np.testing.assert_array_equal(dataset["masks"][row], expected["masks"])
    sparse = ShardLoader(tasks[:1], sparse=True)(shard_paths[1])
    np.testing.assert_array_equal(sparse["rewards"][0], np.where(dataset["rewards"][0] != 0, -1.0, 0.0))
    assert dataset["terminals"][-1] == 1  # each shard ends a trajectory: segments never run into each other


def test_loading_moves_no_global_random_generator(shard_paths, loader):
    state = np.random.get_state()
    loader(shard_paths[0])
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]


def test_shard_tasks_must_share_one_dataset():
    with pytest.raises(ValueError, match="single-task names of one dataset"):
        ShardLoader([TASK2, "cube-triple-play-singletask-task2-v0"], sparse=False)


# --- streaming ---------------------------------------------------------------------------------------------


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


# --- generation and config ---------------------------------------------------------------------------------


def test_generation_names_seeds_and_resumes(tiny_shards_cfg, shard_paths, tmp_path, monkeypatch):
    assert [path.name for path in shard_paths] == [f"{DATASET}-{index:03d}.npz" for index in range(4)]
    with np.load(shard_paths[0]) as first, np.load(shard_paths[1]) as second:
        assert not np.array_equal(first["observations"], second["observations"])

    cfg = OmegaConf.create({"env": OmegaConf.to_container(tiny_shards_cfg)})
    OmegaConf.update(cfg, "env.dataset_dir", str(tmp_path))
    directory = sharded_dir(cfg.env, 0)
    directory.mkdir(parents=True)
    for path in shard_paths:
        if path.name != f"{DATASET}-002.npz":  # an interrupted generation: shard 2 never written
            shutil.copy(path, directory / path.name)
    seeds = []

    def recording_generate(*args, seed, **kwargs):
        seeds.append(seed)
        return generate_dataset(*args, seed=seed, **kwargs)

    monkeypatch.setattr(shards_module, "generate_dataset", recording_generate)
    result = generate_shards(cfg.env, seed=0)
    assert seeds == [shard_seed(0, 2)] and len(result["kept"]) == 3 and result["shards"] == 4
    assert result["steps_per_shard"] == 102 and result["episodes_per_shard"] == 2
    with np.load(directory / f"{DATASET}-002.npz") as regenerated, np.load(shard_paths[2]) as original:
        for key in original.files:
            np.testing.assert_array_equal(regenerated[key], original[key], err_msg=key)


def test_every_env_config_has_the_shard_keys_and_core_count_workers():
    for path in sorted((CONFIGS / "env").glob("*.yaml")):
        root = OmegaConf.create({"env": OmegaConf.load(path)})
        if is_robomimic(root.env.name):  # robomimic's files are read as they are: no shards, no generation
            continue
        cfg = EnvConfig.from_cfg(root.env)
        sharded = path.stem == "cube_quadruple_100m"
        assert cfg.dataset_size == ("100m" if sharded else None), path.name
        assert (cfg.shards_in_memory, cfg.shard_interval, cfg.num_shards) == (1, 1000, None), path.name
        assert cfg.workers == len(os.sched_getaffinity(0)), path.name
    root = OmegaConf.create({"env": OmegaConf.load(CONFIGS / "env/cube.yaml")})
    OmegaConf.update(root, "env.dataset_size", "10m")
    with pytest.raises(
        ValueError, match=r"env.dataset_size: expected null .*\['100m', '1b'\] \(a sharded set\), found '10m'"
    ):
        EnvConfig.from_cfg(root.env)


def test_cube_quadruple_100m_is_the_papers_setting():
    cfg = compose_config("env=cube_quadruple_100m", "agent=qc_fql")
    assert cfg.env.name == TASK2 and not cfg.env.sparse
    assert settings.agent_settings(cfg, "cube-quadruple")["alpha"] == 100
