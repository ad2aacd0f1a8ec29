"""FBRAC's losses against NumPy on the hand-built batch of test_qc_fql, and the gradient of its
backpropagated ODE objective against central finite differences of the NumPy objective on a tiny flow."""

import jax
import numpy as np
import pytest

import agents
from tests import reference
from tests.test_qc_fql import DISCOUNT, batch_for, np_euler

ALPHA = 0.5


def make(**overrides):
    config = dict(
        algorithm="fbrac", chunk_length=3, hidden_dims=[8, 8], num_qs=3, discount=DISCOUNT, alpha=ALPHA
    )
    agent = agents.make_agent({**config, **overrides}, seed=0, obs_dim=2, action_dim=2)
    target = jax.tree_util.tree_map(lambda x: x + 0.1, agent.target_critic)  # tells the critics apart
    return agent.replace(target_critic=target)


def noise_for(agent, seed):
    return {k: np.asarray(v) for k, v in agent.draw_noise(jax.random.PRNGKey(seed), 4).items()}


def np_actor_loss(params, batch, noise):
    """Flow matching (weight valid[h-1] per chunk) - mean_k,b Q_k(s, Euler(z)) / alpha."""
    obs, x1 = batch["observations"], batch["actions"].reshape(4, -1)
    x0, u = noise["flow_x0"], noise["flow_times"]
    pred = reference.vector_field(params["actor_flow"], obs, (1 - u) * x0 + u * x1, u)
    flow = (((pred - (x1 - x0)) ** 2).mean(-1) * batch["valid"][:, -1]).mean()
    actions = np_euler(params["actor_flow"], obs, noise["actor"], 10)
    q = reference.critic(params["critic"], obs, actions).mean()
    return flow - q / ALPHA, flow


def test_critic_loss_bootstraps_from_the_flow_with_mean_minus_rho_std():
    agent, batch = make(), batch_for(3)
    noise = noise_for(agent, 3)
    loss, _ = agent.critic_loss(batch, agent.params, noise)

    next_obs = batch["next_observations"][:, -1]
    next_actions = np_euler(agent.params["actor_flow"], next_obs, noise["next_actions"], 10)
    next_qs = reference.critic(agent.target_critic, next_obs, next_actions)
    target = batch["rewards"][:, -1] + DISCOUNT**3 * batch["masks"][:, -1] * (
        next_qs.mean(0) - 0.5 * next_qs.std(0)
    )
    qs = reference.critic(agent.params["critic"], batch["observations"], batch["actions"].reshape(4, -1))
    np.testing.assert_allclose(float(loss), ((qs - target) ** 2 * batch["valid"][:, -1]).mean(), rtol=1e-5)


def test_actor_loss_matches_numpy():
    agent, batch = make(), batch_for(3)
    noise = noise_for(agent, 4)
    loss, info = agent.actor_loss(batch, agent.params, noise)
    expected, flow = np_actor_loss(agent.params, batch, noise)
    np.testing.assert_allclose(float(info["bc_flow_loss"]), flow, rtol=1e-5)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


@pytest.mark.parametrize(("layer", "index"), [("Dense_0", (0, 3)), ("Dense_1", (2, 5)), ("Dense_2", (4, 1))])
def test_the_backpropagated_ode_gradient_matches_finite_differences(layer, index):
    """d(actor loss)/d(one flow weight) through the 10 Euler steps, against float64 central differences; the
    critic gets no gradient from the actor loss."""
    agent, batch = make(), batch_for(3)
    noise = noise_for(agent, 5)
    grads = jax.grad(lambda p: agent.actor_loss(batch, p, noise)[0])(agent.params)
    params64 = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), agent.params)
    kernel = params64["actor_flow"]["params"]["MLP_0"][layer]["kernel"]
    eps, original = 1e-5, kernel[index]
    kernel[index] = original + eps
    up, _ = np_actor_loss(params64, batch, noise)
    kernel[index] = original - eps
    down, _ = np_actor_loss(params64, batch, noise)
    got = float(grads["actor_flow"]["params"]["MLP_0"][layer]["kernel"][index])
    np.testing.assert_allclose(got, (up - down) / (2 * eps), rtol=1e-3, atol=1e-6)
    assert all(float(np.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(grads["critic"]))
