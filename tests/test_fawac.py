"""FAWAC's losses and sampler against NumPy on the hand-built batch of test_qc_fql; a vector member is its
single run through a resume."""

import jax
import numpy as np

import agents
from tests import reference
from tests.test_qc_fql import DISCOUNT, batch_for, np_euler
from tests.test_vector import assert_swept_member_is_alone

RHO = 0.5


def make(**overrides):
    config = dict(
        algorithm="fawac", chunk_length=3, hidden_dims=[8, 8], num_qs=3, discount=DISCOUNT, inv_temp=2.0
    )
    agent = agents.make_agent({**config, **overrides}, seed=0, obs_dim=2, action_dim=2)
    target = jax.tree_util.tree_map(lambda x: x + 0.1, agent.target_critic)  # tells the critics apart
    return agent.replace(target_critic=target)


def noise_for(agent, seed):
    return {k: np.asarray(v) for k, v in agent.draw_noise(jax.random.PRNGKey(seed), 4).items()}


def test_critic_and_value_losses_match_numpy():
    agent, batch = make(), batch_for(3)
    noise = noise_for(agent, 3)
    loss, info = agent.critic_loss(batch, agent.params, noise)

    next_obs = batch["next_observations"][:, -1]
    next_actions = np_euler(agent.params["actor"], next_obs, noise["next_actions"], 10)
    next_qs = reference.critic(agent.target_critic, next_obs, next_actions)
    next_q = next_qs.mean(0) - RHO * next_qs.std(0)
    target = batch["rewards"][:, -1] + DISCOUNT**3 * batch["masks"][:, -1] * next_q
    obs, actions, last_valid = batch["observations"], batch["actions"].reshape(4, -1), batch["valid"][:, -1]
    critic = ((reference.critic(agent.params["critic"], obs, actions) - target) ** 2 * last_valid).mean()
    v = reference.mlp(agent.params["value"]["params"]["MLP_0"], obs)[:, 0]
    value = ((reference.critic(agent.target_critic, obs, actions) - v) ** 2 * last_valid).mean()
    np.testing.assert_allclose(float(info["critic_loss"]), critic, rtol=1e-5)
    np.testing.assert_allclose(float(info["value_loss"]), value, rtol=1e-5)
    np.testing.assert_allclose(float(loss), critic + value, rtol=1e-5)


def test_weighted_flow_matching_loss_matches_numpy():
    """Each chunk's flow-matching error weighted by min(exp(inv_temp (mean_k Q_k - V)), 100) * valid[h-1]."""
    agent, batch = make(), batch_for(3)
    value = agent.params["value"]["params"]["MLP_0"]  # lowered, so that the cap binds on some chunks
    lowered = {**value, "Dense_2": {**value["Dense_2"], "bias": value["Dense_2"]["bias"] - 1.5}}
    agent = agent.replace(params={**agent.params, "value": {"params": {"MLP_0": lowered}}})
    noise = noise_for(agent, 4)
    loss, info = agent.actor_loss(batch, agent.params, noise)

    obs, x1 = batch["observations"], batch["actions"].reshape(4, -1)
    advantages = reference.critic(agent.params["critic"], obs, x1).mean(0)
    advantages -= reference.mlp(agent.params["value"]["params"]["MLP_0"], obs)[:, 0]
    weights = np.minimum(np.exp(2.0 * advantages), 100.0)
    x0, u = noise["flow_x0"], noise["flow_times"]
    pred = reference.vector_field(agent.params["actor"], obs, (1 - u) * x0 + u * x1, u)
    expected = (((pred - (x1 - x0)) ** 2).mean(-1) * weights * batch["valid"][:, -1]).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(info["weight_mean"]), weights.mean(), rtol=1e-5)
    assert 0 < (weights == 100.0).sum() < 4  # the cap binds on some chunks only


def test_acting_integrates_the_flow_and_clips():
    agent = make()
    observations = np.array([[0.3, -0.2], [50.0, 40.0]], np.float32)
    key = jax.random.PRNGKey(7)
    noise = np.asarray(jax.random.normal(key, (2, 6)))
    expected = np_euler(agent.params["actor"], observations, noise, 10).reshape(2, 3, 2)
    np.testing.assert_allclose(agent.sample_actions(observations, key), expected, rtol=1e-5, atol=1e-6)


def test_an_inv_temp_vector_member_is_the_run_alone_through_a_resume(tiny_dataset_dir, tmp_path, monkeypatch):
    assert_swept_member_is_alone(
        tiny_dataset_dir,
        tmp_path,
        monkeypatch,
        "fawac",
        ("inv_temp", 0.5, 3.0),
        "offline/actor/actor_loss",
        "agent.num_qs=2",
        "agent.flow_steps=2",
    )
