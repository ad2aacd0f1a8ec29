"""IFQL's rejection sampling, and the IFQL-n and QC-IFQL targets, against NumPy on a hand-built batch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from launch.engine import settings
from tests import reference
from tests.helpers import compose_config
from tests.test_iql import make, np_expectile, np_value
from tests.test_qc_fql import DISCOUNT, batch_for, np_euler


def make_ifql(chunk_length=1, action_chunking=True, num_samples=6):
    return make(
        "ifql",
        chunk_length,
        action_chunking=action_chunking,
        num_samples=num_samples,
        flow_steps=4,
        expectile=0.8,
    )


@pytest.mark.parametrize("chunk_length", [1, 3])
def test_acting_keeps_the_flow_sample_with_the_highest_min_q(chunk_length):
    agent = make_ifql(chunk_length, num_samples=16)
    observations = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (5, 2)))
    key = jax.random.PRNGKey(2)
    actions = np.asarray(jax.jit(lambda a, o, k: a.sample_actions(o, k))(agent, observations, key))

    noise = np.asarray(agent.behavior.sampling_noise(key, (5, 16)))
    repeated = np.repeat(observations, 16, axis=0)
    candidates = np_euler(agent.params["behavior"], repeated, noise.reshape(80, -1), 4)
    scores = reference.critic(agent.params["critic"], repeated, candidates).min(0).reshape(5, 16)
    best = scores.argmax(1)
    expected = candidates.reshape(5, 16, -1)[np.arange(5), best]
    np.testing.assert_allclose(actions.reshape(5, -1), expected, rtol=1e-4, atol=1e-5)
    assert actions.shape == (5, chunk_length, 2) and len(set(best)) > 1  # the argmax is per row
    # the online critic chooses: the target critic would choose other samples
    target_scores = reference.critic(agent.target_critic, repeated, candidates).min(0).reshape(5, 16)
    assert not np.array_equal(target_scores.argmax(1), best)


def test_qc_ifql_targets_over_chunks_count_nothing_past_an_episode_end():
    agent = make_ifql(chunk_length=3)
    batch = batch_for(3)  # start 2 crosses the first episode's end; start 8 reaches the success
    obs, valid, chunks = batch["observations"], batch["valid"][:, -1], batch["actions"].reshape(4, -1)
    assert valid[0] == 0 and batch["masks"][1, -1] == 0

    loss, _ = agent.value_loss(batch, agent.params)
    v = np_value(agent.params["value"], obs)
    target_q = reference.critic(agent.target_critic, obs, chunks).min(0)
    np.testing.assert_allclose(float(loss), np_expectile(target_q - v, 0.8, valid), rtol=1e-5)

    loss, _ = agent.critic_loss(batch, agent.params)
    next_v = np_value(agent.params["value"], batch["next_observations"][:, -1])
    target = batch["rewards"][:, -1] + DISCOUNT**3 * batch["masks"][:, -1] * next_v
    qs = reference.critic(agent.params["critic"], obs, chunks)
    np.testing.assert_allclose(float(loss), ((qs - target) ** 2 * valid).mean(), rtol=1e-5)

    noise = jax.tree_util.tree_map(np.asarray, agent.draw_noise(jax.random.PRNGKey(5), 4))
    loss, _ = agent.behavior_loss(batch, agent.params, noise)
    x0, u = noise["x0"], noise["times"]
    pred = reference.vector_field(agent.params["behavior"], obs, (1 - u) * x0 + u * chunks, u)
    flow = (((pred - (chunks - x0)) ** 2).reshape(4, 3, 2) * batch["valid"][..., None]).mean()
    np.testing.assert_allclose(float(loss), flow, rtol=1e-5)


def test_ifql_n_scores_one_action_and_keeps_the_n_step_target():
    agent = make_ifql(chunk_length=3, action_chunking=False)
    batch = batch_for(3)
    obs, first = batch["observations"], batch["actions"][:, 0]
    loss, _ = agent.critic_loss(batch, agent.params)
    next_v = np_value(agent.params["value"], batch["next_observations"][:, -1])
    target = batch["rewards"][:, -1] + DISCOUNT**3 * batch["masks"][:, -1] * next_v
    qs = reference.critic(agent.params["critic"], obs, first)
    np.testing.assert_allclose(float(loss), ((qs - target) ** 2 * batch["valid"][:, -1]).mean(), rtol=1e-5)

    noise = jax.tree_util.tree_map(np.asarray, agent.draw_noise(jax.random.PRNGKey(5), 4))
    loss, _ = agent.behavior_loss(batch, agent.params, noise)
    x0, u = noise["x0"], noise["times"]
    pred = reference.vector_field(agent.params["behavior"], obs, (1 - u) * x0 + u * first, u)
    np.testing.assert_allclose(float(loss), ((pred - (first - x0)) ** 2).mean(), rtol=1e-5)
    assert agent.sample_actions(jnp.zeros((2, 2)), jax.random.PRNGKey(0)).shape == (2, 1, 2)


def test_update_steps_value_critic_and_flow_and_polyak_averages_the_critic():
    agent = make_ifql(chunk_length=3)
    new, info = jax.jit(lambda a, b: a.update(b))(agent, batch_for(3))
    tau = agent.config.tau
    expected = jax.tree_util.tree_map(
        lambda p, t: tau * p + (1 - tau) * t,
        agent.params["critic"],
        agent.target_critic,  # pre-step params
    )
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), new.target_critic, expected
    )
    for name in ("critic", "value", "behavior"):
        before, after = (jax.tree_util.tree_leaves(a.params[name])[0] for a in (agent, new))
        assert not np.allclose(before, after), name
    assert {"value/value_loss", "critic/critic_loss", "actor/bc_flow_loss", "grad/norm"} <= set(info)


@pytest.mark.parametrize(
    ("agent_name", "chunk_length", "action_chunking"),
    [("ifql", 1, True), ("ifql_n", 5, False), ("qc_ifql", 5, True)],
)
def test_paper_settings(agent_name, chunk_length, action_chunking):
    config = agents.make_config(settings.agent_settings(compose_config(f"agent={agent_name}"), "scene"))
    assert (config.chunk_length, config.action_chunking) == (chunk_length, action_chunking)
    assert (config.num_samples, config.expectile, config.flow_steps, config.q_agg) == (32, 0.9, 10, "min")
    with pytest.raises(ValueError, match="invalid agent setting num_samples=0: expected an integer >= 1"):
        agents.make_config({"algorithm": "ifql", "num_samples": 0})
