"""The jitted hot path (launch/engine/fused.py): the first non-finite update found, the plain path of a vector
of one, per-run counts and jax.lax.map against jax.vmap."""

import jax
import jax.numpy as jnp
import numpy as np

import agents
import buffers
from launch.engine import vector
from launch.engine.fused import fused_updates
from tests.test_buffers import hand_built


def test_a_vector_of_one_and_an_unbatched_count_give_the_vmapped_updates():
    """The plain path (one run, a shared count) against the vmapped path of two copies of the same run; in a
    2-run alpha vector with per-run counts, the run given 0 updates comes back unchanged, and jax.lax.map
    over the runs gives what jax.vmap gives."""
    settings = {"algorithm": "qc_fql", "hidden_dims": [8], "chunk_length": 2}
    replay = buffers.make_replay([hand_built()], [0, 0], [0, 0], 100, 10, None)
    lone = jax.tree_util.tree_map(lambda leaf: leaf[:1], replay.run_part())
    one = vector.stack([agents.make_agent(settings, 0, 2, 2)])
    twice = vector.stack([agents.make_agent(settings, 0, 2, 2)] * 2)
    keys = jnp.stack([jax.random.PRNGKey(1)] * 2)
    kw = dict(batch_size=4, online=False)
    plain = fused_updates(one, keys[:1], replay.with_run_part(lone), jnp.int32(3), **kw)
    batched = fused_updates(twice, keys, replay, jnp.int32([3, 3]), **kw)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a[0], b[1], rtol=1e-5, atol=1e-6),
        (plain[0].params, plain[2]),
        (batched[0].params, batched[2]),
    )

    def alphas():
        return vector.stack([agents.make_agent({**settings, "alpha": a}, 0, 2, 2) for a in (3.0, 300.0)])

    before = jax.tree_util.tree_map(np.asarray, alphas().params)
    after = fused_updates(alphas(), keys, replay, jnp.int32([0, 3]), **kw)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a[0], b[0]), after[0].params, before)
    looped = fused_updates(alphas(), keys, replay, jnp.int32([0, 3]), **kw, run_map="map")  # jax.lax.map
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        (looped[0].params, looped[2]),
        (after[0].params, after[2]),
    )


def test_non_finite_loss_is_detected_at_its_update():
    data = hand_built()
    data["rewards"][:] = np.nan
    replay = buffers.make_replay([data], [0], [0], 100, 10, None)
    from agents import make_agent

    agent = make_agent({"algorithm": "qc_fql", "hidden_dims": [8], "chunk_length": 2}, 0, 2, 2)
    _, _, _, first_bad, bad = fused_updates(
        vector.stack([agent]),
        jax.random.PRNGKey(0)[None],
        replay,
        jnp.int32([3]),
        batch_size=4,
        online=False,
    )
    assert int(first_bad[0]) == 0
    assert bool(bad["critic/critic_loss"][0]) and not bool(bad["actor/bc_flow_loss"][0])


ASKED: list[bool] = []  # every_next of each sample a RecordingReplay was asked for


class RecordingReplay(buffers.Replay):
    """A replay that records what each update asks of its sampler."""

    def sample(self, *args):
        ASKED.append(args[-1])
        return super().sample(*args)


def test_the_update_asks_for_every_next_observation_only_when_its_agent_reads_them():
    """SUPE-GT's VAE encodes every state of a segment; a TD target reads the last next observation only."""
    replay = buffers.make_replay([hand_built()], [0], [0], 100, 10, None)
    recording = RecordingReplay(replay.offline, replay.online, replay.segment, replay.offline_ratio)
    tiny = {"hidden_dims": [8], "chunk_length": 2}
    for name, extra in (
        ("qc_fql", {}),
        ("supe_gt", {"vae_hidden_dims": [8], "encoder_size": 8, "skill_dim": 2}),
    ):
        ASKED.clear()
        agent = vector.stack([agents.make_agent({"algorithm": name, **tiny, **extra}, 0, 2, 2)])
        keys = jax.random.PRNGKey(0)[None]
        jax.eval_shape(
            lambda agent, keys=keys: fused_updates(
                agent, keys, recording, jnp.int32(1), batch_size=4, online=False
            ),
            agent,
        )
        assert set(ASKED) == {name == "supe_gt"}
