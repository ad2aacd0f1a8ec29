"""DSRL's losses and sampler against NumPy on the hand-built batch of test_qc_fql; a noise_scale vector member
is its single run through a resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from tests import reference
from tests.test_qam import np_edit_actor as np_tanh_gaussian_heads
from tests.test_qam import np_tanh_gaussian
from tests.test_qc_fql import DISCOUNT, batch_for, np_euler
from tests.test_vector import assert_swept_member_is_alone

NOISE_SCALE, RHO, TEMPERATURE = 0.7, 0.5, 0.3


def make(**overrides):
    config = dict(
        algorithm="dsrl",
        chunk_length=3,
        hidden_dims=[8, 8],
        num_qs=3,
        discount=DISCOUNT,
        noise_scale=NOISE_SCALE,
        **overrides,
    )
    agent = agents.make_agent(config, seed=0, obs_dim=2, action_dim=2)
    # Targets that differ from the online networks and a temperature other than 1, so the tests see which
    # is used where.
    return agent.replace(
        target_critic=jax.tree_util.tree_map(lambda x: x + 0.1, agent.target_critic),
        target_bc_flow=jax.tree_util.tree_map(lambda x: x * 1.2, agent.target_bc_flow),
        params={**agent.params, "log_temperature": jnp.float32(np.log(TEMPERATURE))},
    )


def noise_for(agent, seed):
    return {k: np.asarray(v) for k, v in agent.draw_noise(jax.random.PRNGKey(seed), 4).items()}


def np_noise_policy(params, obs, eps):
    """noise_scale * tanh(mu + std * eps), the log-probability of the tanh sample, and the stds."""
    means, log_stds = np_tanh_gaussian_heads(params["noise_actor"], obs)
    latent, log_probs = np_tanh_gaussian(means, log_stds, eps)
    return NOISE_SCALE * latent, log_probs, np.exp(log_stds)


def np_act(params, target_bc_flow, obs, eps):
    return np_euler(target_bc_flow, obs, np_noise_policy(params, obs, eps)[0], 10)


def test_critic_loss_is_td_from_the_steered_flow_plus_the_noise_critics_distillation():
    agent, batch = make(), batch_for(3)
    noise = noise_for(agent, 3)
    loss, info = agent.critic_loss(batch, agent.params, noise)

    params, obs = agent.params, batch["observations"]
    next_obs = batch["next_observations"][:, -1]
    next_actions = np_act(params, agent.target_bc_flow, next_obs, noise["next_actions"])
    next_qs = reference.critic(agent.target_critic, next_obs, next_actions)
    target = batch["rewards"][:, -1] + DISCOUNT**3 * batch["masks"][:, -1] * (
        next_qs.mean(0) - RHO * next_qs.std(0)
    )
    qs = reference.critic(params["critic"], obs, batch["actions"].reshape(4, -1))
    td_loss = ((qs - target) ** 2 * batch["valid"][:, -1]).mean()
    # z ~ N(0, I), unscaled; each noise critic member regresses on its action critic member, no valid weight
    flow_actions = np_euler(agent.target_bc_flow, obs, noise["distill"], 10)
    noise_qs = reference.critic(params["noise_critic"], obs, noise["distill"])
    distill = ((noise_qs - reference.critic(params["critic"], obs, flow_actions)) ** 2).mean()
    np.testing.assert_allclose(float(info["critic_loss"]), td_loss, rtol=1e-5)
    np.testing.assert_allclose(float(info["distill_loss"]), distill, rtol=1e-5)
    np.testing.assert_allclose(float(loss), td_loss + distill, rtol=1e-5)
    # the distillation moves the noise critic only: the action critic's gradient is the TD loss's alone
    grads = jax.grad(lambda p: agent.critic_loss(batch, p, noise)[0])(agent.params)
    td_grads = jax.grad(lambda p: agent.critic_loss(batch, p, noise)[1]["critic_loss"])(agent.params)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)  # noqa: E731
    jax.tree_util.tree_map(close, grads["critic"], td_grads["critic"])
    for name in ("noise_actor", "bc_flow"):
        assert all(float(np.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(grads[name]))


def test_actor_loss_is_flow_matching_plus_sac_on_the_noise_and_the_temperature_loss():
    agent, batch = make(), batch_for(3)
    noise = noise_for(agent, 4)
    _, info = jax.jit(lambda p: agent.total_loss(p, batch, noise))(agent.params)

    params, obs = agent.params, batch["observations"]
    x1, x0, u = batch["actions"].reshape(4, -1), noise["flow_x0"], noise["flow_times"]
    pred = reference.vector_field(params["bc_flow"], obs, (1 - u) * x0 + u * x1, u)
    flow = (((pred - (x1 - x0)) ** 2).mean(-1) * batch["valid"][:, -1]).mean()
    latent, log_probs, stds = np_noise_policy(params, obs, noise["noise_actor"])
    q = reference.critic(params["noise_critic"], obs, latent).mean(0)
    sac = (TEMPERATURE * log_probs - q).mean()
    entropy = -log_probs.mean()
    temperature_loss = TEMPERATURE * (entropy - (-0.5 * 6))
    np.testing.assert_allclose(float(info["actor/bc_flow_loss"]), flow, rtol=1e-5)
    np.testing.assert_allclose(float(info["actor/actor_loss"]), sac, rtol=1e-4)
    np.testing.assert_allclose(float(info["actor/entropy"]), entropy, rtol=1e-4)
    np.testing.assert_allclose(float(info["actor/action_std"]), stds.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(info["actor/q"]), q.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(info["temperature/temperature_loss"]), temperature_loss, rtol=1e-4)

    # the noise critic and the temperature are held fixed by the actor loss; the temperature's gradient is
    # temperature * entropy gap
    grads = jax.grad(lambda p: agent.actor_loss(batch, p, noise)[0])(agent.params)
    assert all(float(np.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(grads["noise_critic"]))
    assert float(grads["log_temperature"]) == 0.0
    total = jax.grad(lambda p: agent.total_loss(p, batch, noise)[0])(agent.params)
    np.testing.assert_allclose(float(total["log_temperature"]), temperature_loss, rtol=1e-4)


@pytest.mark.parametrize(("use_target_latent", "flow"), [(True, "target"), (False, "bc_flow")])
def test_acting_runs_the_flow_from_the_noise_policys_scaled_sample(use_target_latent, flow):
    agent = make(use_target_latent=use_target_latent)
    observations = np.array([[0.3, -0.2], [5.0, 4.0]], np.float32)
    key = jax.random.PRNGKey(7)
    eps = np.asarray(jax.random.normal(key, (2, 6)))
    flow_params = agent.target_bc_flow if flow == "target" else agent.params["bc_flow"]
    expected = np_euler(flow_params, observations, np_noise_policy(agent.params, observations, eps)[0], 10)
    actions = agent.sample_actions(jnp.asarray(observations), key)
    assert actions.shape == (2, 3, 2)
    np.testing.assert_allclose(actions.reshape(2, -1), expected, rtol=1e-5, atol=1e-6)


def test_update_polyak_averages_both_targets_from_the_parameters_before_the_step():
    agent = make()
    updated, info = jax.jit(lambda a, b: a.update(b))(agent, batch_for(3))
    for name, target in (("critic", "target_critic"), ("bc_flow", "target_bc_flow")):
        expected = jax.tree_util.tree_map(
            lambda p, t: 0.005 * p + 0.995 * t, agent.params[name], getattr(agent, target)
        )
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
            getattr(updated, target),
            expected,
        )
    moved = jax.tree_util.tree_map(lambda a, b: float(np.abs(a - b).max()), updated.params, agent.params)
    assert all(value > 0 for value in jax.tree_util.tree_leaves(moved))  # one Adam step moves every network
    assert np.isfinite(float(info["critic/distill_loss"]))


def test_a_noise_scale_vector_member_is_the_run_alone_through_a_resume(
    tiny_dataset_dir, tmp_path, monkeypatch
):
    assert_swept_member_is_alone(
        tiny_dataset_dir,
        tmp_path,
        monkeypatch,
        "dsrl",
        ("noise_scale", 0.5, 1.4),
        "offline/actor/actor_loss",
        "agent.num_qs=2",
        "agent.flow_steps=2",
    )
