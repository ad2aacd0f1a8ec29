"""FEdit's acting policy (the BC flow's chunk, edited, best-of-N by the online critics), its critic target and
its losses against NumPy on the hand-built batch of test_qc_fql; an edit_scale vector member through a
resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from agents import step
from tests import reference
from tests.test_qam import np_edit_actor, np_tanh_gaussian
from tests.test_qc_fql import DISCOUNT, batch_for, np_euler
from tests.test_vector import assert_swept_member_is_alone

FLOW_STEPS, EDIT_SCALE, TEMPERATURE = 4, 0.3, 0.3


def make(**overrides):
    config = dict(
        algorithm="fedit",
        chunk_length=3,
        hidden_dims=[8, 8],
        num_qs=3,
        flow_steps=FLOW_STEPS,
        edit_scale=EDIT_SCALE,
        discount=DISCOUNT,
    )
    agent = agents.make_agent({**config, **overrides}, seed=0, obs_dim=2, action_dim=2)
    params = {**agent.params, "log_temperature": jnp.float32(np.log(TEMPERATURE))}
    # a target critic that differs from the online one, so the test sees which is used where
    target = jax.tree_util.tree_map(lambda x: x + 0.1, agent.target_critic)
    return agent.replace(params=params, target_critic=target)


def noise_of(agent, seed):
    return {k: np.asarray(v) for k, v in agent.draw_noise(jax.random.PRNGKey(seed), 4).items()}


def np_edited(params, obs, noise, edit_noise, edit_scale=EDIT_SCALE):
    """clip(a + edit_scale * edit) for a the BC flow's clipped Euler chunk, and a; obs (batch, 2), noises
    (batch, 6)."""
    flow = np_euler(params["actor_bc_flow"], obs, noise, FLOW_STEPS)
    edit, _ = np_tanh_gaussian(*np_edit_actor(params["edit"], np.concatenate([obs, flow], -1)), edit_noise)
    return np.clip(flow + edit_scale * edit, -1, 1), flow


def np_act(params, obs, noise, edit_noise, edit_scale=EDIT_SCALE):
    """The best of the candidates (batch, n, 6) by the online critics' mean (the first on ties), and its
    index."""
    candidates = [
        np_edited(params, obs, noise[:, j], edit_noise[:, j], edit_scale)[0] for j in range(noise.shape[1])
    ]
    scores = np.stack([reference.critic(params["critic"], obs, c).mean(0) for c in candidates], 1)
    best = scores.argmax(1)
    return np.stack(candidates, 1)[np.arange(len(obs)), best], best


@pytest.mark.parametrize("edit_scale", [0.0, EDIT_SCALE])
def test_acting_edits_the_flow_chunk_and_clips(edit_scale):
    agent = make(edit_scale=edit_scale)
    obs = batch_for(3)["observations"]
    key = jax.random.PRNGKey(8)
    actions = agent.sample_actions(jnp.asarray(obs), key)
    noise_key, edit_key = jax.random.split(key)
    noise = np.asarray(jax.random.normal(noise_key, (24,))).reshape(4, 1, 6)  # agents.behavior.normal
    edit_noise = np.asarray(jax.random.normal(edit_key, (24,))).reshape(4, 1, 6)
    expected, flow = np_edited(agent.params, obs, noise[:, 0], edit_noise[:, 0], edit_scale)
    assert actions.shape == (4, 3, 2)
    np.testing.assert_allclose(actions.reshape(4, -1), expected, atol=1e-5)
    if edit_scale == 0:  # get_config's edit_scale: the BC flow's chunk as it is
        np.testing.assert_allclose(actions.reshape(4, -1), flow, atol=1e-5)
    else:
        assert np.abs(expected - flow).max() > 1e-2


def test_best_of_n_keeps_the_edited_chunk_the_online_critics_score_highest():
    agent = make(best_of_n=5)
    obs = batch_for(3)["observations"]
    rng = np.random.default_rng(0)
    noise, edit_noise = (rng.normal(size=(4, 5, 6)).astype(np.float32) for _ in range(2))
    got = agent.act(agent.params, jnp.asarray(obs), jnp.asarray(noise), jnp.asarray(edit_noise))
    expected, best = np_act(agent.params, obs, noise, edit_noise)
    assert (best != 0).any()  # the selection matters on this batch
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("best_of_n", [1, 3])
def test_critic_loss_bootstraps_from_the_acting_policy_with_mean_minus_rho_std(best_of_n):
    agent, batch = make(best_of_n=best_of_n), batch_for(3)
    noise = noise_of(agent, 3)
    assert noise["next_actions"].shape == noise["next_edit"].shape == (4, best_of_n, 6)
    loss, info = agent.critic_loss(batch, agent.params, noise)

    next_obs = batch["next_observations"][:, -1]
    next_actions, _ = np_act(agent.params, next_obs, noise["next_actions"], noise["next_edit"])
    next_qs = reference.critic(agent.target_critic, next_obs, next_actions)
    target = batch["rewards"][:, -1] + DISCOUNT**3 * batch["masks"][:, -1] * (
        next_qs.mean(0) - 0.5 * next_qs.std(0)
    )
    qs = reference.critic(agent.params["critic"], batch["observations"], batch["actions"].reshape(4, -1))
    np.testing.assert_allclose(float(loss), ((qs - target) ** 2 * batch["valid"][:, -1]).mean(), rtol=1e-5)
    np.testing.assert_allclose(float(info["q_mean"]), qs.mean(), rtol=1e-5)


def test_bc_flow_loss_weights_each_chunk_by_its_last_valid():
    agent, batch = make(), batch_for(3)
    noise = noise_of(agent, 4)
    loss, _ = agent.flow_loss(batch, agent.params, noise)
    obs, x1 = batch["observations"], batch["actions"].reshape(4, -1)
    x0, u = noise["flow_x0"], noise["flow_times"]
    pred = reference.vector_field(agent.params["actor_bc_flow"], obs, (1 - u) * x0 + u * x1, u)
    expected = (((pred - (x1 - x0)) ** 2).mean(-1) * batch["valid"][:, -1]).mean()
    assert batch["valid"][0, -1] == 0 and batch["valid"][0, 0] == 1  # a per-step weight would differ
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_edit_loss_is_sac_on_the_bc_flow_chunk_with_an_automatic_temperature():
    agent, batch = make(), batch_for(3)
    noise = noise_of(agent, 7)
    loss, info = agent.edit_loss(batch, agent.params, noise)
    obs = batch["observations"]
    flow = np_euler(agent.params["actor_bc_flow"], obs, noise["edit_x0"], FLOW_STEPS)
    means, log_stds = np_edit_actor(agent.params["edit"], np.concatenate([obs, flow], -1))
    edit, log_probs = np_tanh_gaussian(means, log_stds, noise["edit"])
    q = reference.critic(agent.params["critic"], obs, np.clip(flow + EDIT_SCALE * edit, -1, 1)).mean()
    entropy = -log_probs.mean()
    temperature_loss = TEMPERATURE * (entropy - (-0.5 * 6))
    np.testing.assert_allclose(float(info["q_loss"]), -q, rtol=1e-5)
    np.testing.assert_allclose(float(info["entropy"]), entropy, rtol=1e-4)
    np.testing.assert_allclose(float(info["temperature_loss"]), temperature_loss, rtol=1e-4)
    np.testing.assert_allclose(float(loss), -q + TEMPERATURE * log_probs.mean() + temperature_loss, rtol=1e-4)
    grads = jax.grad(lambda p: agent.edit_loss(batch, p, noise)[0])(agent.params)
    # the temperature's gradient is the entropy gap alone; the flow and the critics are held fixed
    np.testing.assert_allclose(float(grads["log_temperature"]), temperature_loss, rtol=1e-4)
    for name in ("critic", "actor_bc_flow"):
        assert all(float(np.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(grads[name]))
    assert any(float(np.abs(g).max()) > 0.0 for g in jax.tree_util.tree_leaves(grads["edit"]))


def test_update_is_one_unclipped_adam_step_and_polyak_averages_the_critic_from_before_it():
    agent = make()
    assert agent.optimizer is step.adam(3e-4)  # no gradient clipping (QAM's clip_grad)
    updated, info = jax.jit(lambda a, b: a.update(b))(agent, batch_for(3))
    expected = jax.tree_util.tree_map(
        lambda p, t: 0.005 * p + 0.995 * t, agent.params["critic"], agent.target_critic
    )
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), updated.target_critic, expected
    )
    assert {"actor/bc_flow_loss", "edit/q_loss", "edit/temperature"} <= set(info)


def test_an_edit_scale_vector_member_is_the_run_alone_through_a_resume(
    tiny_dataset_dir, tmp_path, monkeypatch
):
    assert_swept_member_is_alone(
        tiny_dataset_dir,
        tmp_path,
        monkeypatch,
        "fedit",
        ("edit_scale", 0.1, 0.5),
        "offline/edit/q_loss",
        "agent.num_qs=2",
        "agent.flow_steps=2",
    )
