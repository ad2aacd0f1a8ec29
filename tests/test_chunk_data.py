"""The replay of TD agents (launch/engine/chunk_data.py): a sharded dataset streamed through training."""

import jax
import numpy as np

from launch import train as train_module
from tests.helpers import compose_config, train_interrupted
from tests.test_vector import TINY, rows, untimed


def shards_config(tiny_shards_cfg, *overrides):
    generate = tiny_shards_cfg.generate
    return compose_config(
        "agent=qc_fql",
        "env=cube_quadruple_100m",
        f"env.dataset_dir={tiny_shards_cfg.dataset_dir}",
        f"env.generate.num_episodes={generate.num_episodes}",
        f"env.generate.max_episode_steps={generate.max_episode_steps}",
        "env.shard_interval=5",
        "logger.mode=disabled",
        *TINY,
        *overrides,
    )


def test_a_sharded_dataset_streams_through_training_and_resumes_exactly(
    tiny_shards_cfg, tmp_path, monkeypatch, caplog
):
    """Offline and online through the stream, a swap every 5 updates (every 5 env steps online with
    env.swap_online), killed online and resumed: the same parameters, online replay and resident shards as
    the uninterrupted run."""
    with caplog.at_level("INFO", logger="launch.engine.run"):
        full = train_module.train(shards_config(tiny_shards_cfg, "env.swap_online=true"), tmp_path / "full")
    swaps = [record.getMessage() for record in caplog.records if "shard swap" in record.getMessage()]
    assert len(swaps) == 10 // 5 + 20 // 5 - 1  # offline at 5, 10; online at env steps 5, 10, 15
    assert full.stream.position == len(swaps)

    # killed at the 4th online dispatch: past the checkpoint at env step 10
    swapping = "env.swap_online=true"
    train_interrupted(
        train_module.train, shards_config(tiny_shards_cfg, swapping), tmp_path / "resumed", monkeypatch, 4
    )
    resumed = train_module.train(
        shards_config(tiny_shards_cfg, swapping, "resume=true"), tmp_path / "resumed"
    )
    assert resumed.stream.state() == full.stream.state()
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.agent.params, full.agent.params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.replay, full.replay)
    assert untimed(rows(tmp_path / "resumed")) == untimed(rows(tmp_path / "full"))


def test_shards_swap_offline_only_by_default(tiny_shards_cfg, tmp_path, caplog):
    """As the reference's main.py: online, the shard resident at the end of the offline phase stays."""
    with caplog.at_level("INFO", logger="launch.engine.run"):
        run = train_module.train(shards_config(tiny_shards_cfg), tmp_path / "run")
    swaps = [record.getMessage() for record in caplog.records if "shard swap" in record.getMessage()]
    assert [message.split(":")[0] for message in swaps] == [
        "shard swap 1 at step 5",
        "shard swap 2 at step 10",
    ]
    assert run.stream.position == 2 and run.counters.env_step == 20
    assert run.resident_shards() == [run.stream.path_of(2).name]
