"""QC-FQL losses against NumPy on a hand-built batch (mid-chunk success, a chunk crossing an episode end)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
import buffers
from tests import reference
from tests.test_buffers import hand_built

DISCOUNT = 0.99


def make(chunk_length=3, action_chunking=True, **overrides):
    config = dict(
        algorithm="qc_fql",
        chunk_length=chunk_length,
        action_chunking=action_chunking,
        hidden_dims=[8, 8],
        alpha=3.0,
        discount=DISCOUNT,
        **overrides,
    )
    agent = agents.make_agent(config, seed=0, obs_dim=2, action_dim=2)
    # A target critic that differs from the online one, so the test sees which is used where.
    target = jax.tree_util.tree_map(lambda x: x + 0.1, agent.target_critic)
    return agent.replace(target_critic=target)


def batch_for(chunk_length, starts=(2, 8, 0, 10)):
    """Start 2 crosses the end of the first trajectory, start 8 covers the success at index 10."""
    data = hand_built()
    batch = buffers.gather_chunks(buffers.from_dataset(data), jnp.asarray(starts), chunk_length, DISCOUNT)
    return {key: np.asarray(value) for key, value in batch.items()}


def np_policy(params, observations, noise):
    return np.clip(reference.vector_field(params["actor_onestep_flow"], observations, noise), -1, 1)


@pytest.mark.parametrize("q_agg", ["mean", "min"])
def test_critic_loss_matches_numpy(q_agg):
    agent = make(q_agg=q_agg)
    batch = batch_for(3)
    noise = {k: np.asarray(v) for k, v in agent.draw_noise(jax.random.PRNGKey(3), 4).items()}
    loss, info = agent.critic_loss(batch, agent.params, noise)

    next_obs = batch["next_observations"][:, -1]
    next_actions = np_policy(agent.params, next_obs, noise["next_actions"])
    next_qs = reference.critic(agent.target_critic, next_obs, next_actions)
    next_q = next_qs.mean(0) if q_agg == "mean" else next_qs.min(0)
    target = batch["rewards"][:, -1] + DISCOUNT**3 * batch["masks"][:, -1] * next_q
    qs = reference.critic(agent.params["critic"], batch["observations"], batch["actions"].reshape(4, -1))
    expected = ((qs - target) ** 2 * batch["valid"][:, -1]).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(info["q_mean"]), qs.mean(), rtol=1e-5)
    # the chunk crossing an episode end has weight 0; the one with a success has mask 0 (no bootstrap)
    assert batch["valid"][0, -1] == 0 and batch["masks"][1, -1] == 0


def np_euler(params, observations, noise, steps):
    x = noise
    for step in range(steps):
        times = np.full((len(x), 1), step / steps)
        x = x + reference.vector_field(params, observations, x, times) / steps
    return np.clip(x, -1, 1)


def test_actor_losses_match_numpy():
    agent = make()
    batch = batch_for(3)
    noise = {k: np.asarray(v) for k, v in agent.draw_noise(jax.random.PRNGKey(4), 4).items()}
    loss, info = agent.actor_loss(batch, agent.params, noise)

    obs = batch["observations"]
    x1 = batch["actions"].reshape(4, -1)
    x0, u = noise["flow_x0"], noise["flow_times"]
    pred = reference.vector_field(agent.params["actor_bc_flow"], obs, (1 - u) * x0 + u * x1, u)
    flow = (((pred - (x1 - x0)) ** 2).reshape(4, 3, 2) * batch["valid"][..., None]).mean()
    flow_actions = np_euler(agent.params["actor_bc_flow"], obs, noise["distill"], 10)
    onestep = reference.vector_field(agent.params["actor_onestep_flow"], obs, noise["distill"])
    distill = ((onestep - flow_actions) ** 2).mean()
    q = reference.critic(agent.params["critic"], obs, np.clip(onestep, -1, 1)).mean()
    np.testing.assert_allclose(float(info["bc_flow_loss"]), flow, rtol=1e-5)
    np.testing.assert_allclose(float(info["distill_loss"]), distill, rtol=1e-5)
    np.testing.assert_allclose(float(info["q_loss"]), -q, rtol=1e-5)
    np.testing.assert_allclose(float(loss), flow + 3.0 * distill - q, rtol=1e-5)


def test_chunk_length_one_is_plain_one_step_td():
    agent = make(chunk_length=1)
    data = hand_built()
    starts = np.arange(len(data["rewards"]))
    batch = {
        k: np.asarray(v)
        for k, v in buffers.gather_chunks(
            buffers.from_dataset(data), jnp.asarray(starts), 1, DISCOUNT
        ).items()
    }
    noise = {k: np.asarray(v) for k, v in agent.draw_noise(jax.random.PRNGKey(5), len(starts)).items()}
    loss, _ = agent.critic_loss(batch, agent.params, noise)

    next_actions = np_policy(agent.params, data["next_observations"], noise["next_actions"])
    next_q = reference.critic(agent.target_critic, data["next_observations"], next_actions).mean(0)
    target = data["rewards"] + DISCOUNT * data["masks"] * next_q
    qs = reference.critic(agent.params["critic"], data["observations"], data["actions"])
    np.testing.assert_allclose(float(loss), ((qs - target) ** 2).mean(), rtol=1e-5)


def test_without_action_chunking_the_critic_sees_one_action_but_keeps_the_n_step_target():
    agent = make(chunk_length=3, action_chunking=False)
    batch = batch_for(3)
    noise = {k: np.asarray(v) for k, v in agent.draw_noise(jax.random.PRNGKey(6), 4).items()}
    loss, _ = agent.critic_loss(batch, agent.params, noise)

    next_obs = batch["next_observations"][:, -1]
    next_q = reference.critic(
        agent.target_critic, next_obs, np_policy(agent.params, next_obs, noise["next_actions"])
    ).mean(0)
    target = batch["rewards"][:, -1] + DISCOUNT**3 * batch["masks"][:, -1] * next_q
    qs = reference.critic(agent.params["critic"], batch["observations"], batch["actions"][:, 0])
    np.testing.assert_allclose(float(loss), ((qs - target) ** 2 * batch["valid"][:, -1]).mean(), rtol=1e-5)
    assert agent.sample_actions(jnp.zeros((2, 2)), jax.random.PRNGKey(0)).shape == (2, 1, 2)


def test_update_steps_adam_and_polyak_averages_the_target():
    agent = make()
    new, info = jax.jit(lambda a, b: a.update(b))(agent, batch_for(3))
    tau = agent.config.tau
    expected = jax.tree_util.tree_map(
        lambda p, t: tau * p + (1 - tau) * t, agent.params["critic"], agent.target_critic
    )
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), new.target_critic, expected
    )
    assert not np.allclose(
        new.params["critic"]["params"]["VmapMLP_0"]["Dense_0"]["kernel"],
        agent.params["critic"]["params"]["VmapMLP_0"]["Dense_0"]["kernel"],
    )
    assert np.isfinite(float(info["critic/critic_loss"]))


def test_sampled_chunks_are_clipped_and_shaped():
    actions = make().sample_actions(jnp.ones((4, 2)) * 100.0, jax.random.PRNGKey(0))
    assert actions.shape == (4, 3, 2)
    assert float(jnp.abs(actions).max()) <= 1.0
