"""CGQL's guided sampler, distillation losses and critic loss against NumPy on the hand-built batch of
test_qc_fql; the critic's action gradient (the score) by float64 central differences; a vector member is its
single run through a resume."""

import jax
import numpy as np
import pytest

import agents
from agents import guidance
from tests import reference
from tests.test_qc_fql import DISCOUNT, batch_for
from tests.test_vector import assert_swept_member_is_alone

INV_TEMP, GUIDANCE, NOISY, CLIP = 2.0, 0.3, 0.5, 0.4


def make(mode="simple", **overrides):
    config = dict(
        algorithm="cgql", mode=mode, chunk_length=3, hidden_dims=[8, 8], num_qs=3, discount=DISCOUNT,
        inv_temp=INV_TEMP, guidance_coef=GUIDANCE, noisy_coef=NOISY, isd_clip=CLIP, flow_steps=4,
    )  # fmt: skip
    agent = agents.make_agent({**config, **overrides}, seed=0, obs_dim=2, action_dim=2)
    shift = lambda tree, by: jax.tree_util.tree_map(lambda x: x + by, tree)  # noqa: E731
    # targets that differ from the online networks, so the test sees which is used where
    return agent.replace(
        target_critic=shift(agent.target_critic, 0.1), target_actor=shift(agent.target_actor, 0.05)
    )


def np_q(critic, obs, x, times):
    return reference.critic(critic, obs, np.concatenate([x, np.broadcast_to(times, (len(x), 1))], -1))


def np_score(critic, obs, x, times, eps=1e-4):
    """d/dx of the ensemble mean, row by row, by central differences in float64."""
    critic = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), critic)
    x = np.asarray(x, np.float64)
    score = np.zeros_like(x)
    for j in range(x.shape[1]):
        step = np.zeros_like(x)
        step[:, j] = eps
        score[:, j] = (
            np_q(critic, obs, x + step, times).mean(0) - np_q(critic, obs, x - step, times).mean(0)
        ) / (2 * eps)
    return score


def np_guided(agent, obs, noise, mode, steps=4):
    flow, critic = agent.target_actor, agent.params["critic"]
    x = np.asarray(noise, np.float64)
    for i in range(steps):
        u = np.full((len(x), 1), i / steps)
        v = reference.vector_field(flow, obs, x, u)
        if i > 0:
            score = np_score(critic, obs, x, np.ones_like(u) if mode == "simple" else u)
            v = v + (score * (1 - u) * INV_TEMP + x) * GUIDANCE / u
        x = x + v / steps
    return np.clip(x, -1, 1)


@pytest.mark.parametrize("mode", ["simple", "mse"])
def test_guided_sampling_matches_numpy(mode):
    """The slow flow's Euler steps plus guidance_coef / u ((1 - u) inv_temp grad Q + x), unguided at u = 0;
    'simple' reads the critic at u = 1, the time-conditioned modes at u."""
    agent = make(mode)
    obs = np.array([[0.3, -0.2], [1.0, 0.5]], np.float32)
    key = jax.random.PRNGKey(7)
    noise = np.asarray(jax.random.normal(key, (2, 6)))
    expected = np_guided(agent, obs, noise, mode).reshape(2, 3, 2)
    np.testing.assert_allclose(agent.sample_actions(obs, key), expected, rtol=1e-4, atol=1e-5)


def test_no_guidance_at_inv_temp_zero():
    agent = make(inv_temp=0.0)
    obs = np.array([[0.3, -0.2]], np.float32)
    key = jax.random.PRNGKey(1)
    noise = np.asarray(jax.random.normal(key, (1, 6)))
    x = noise
    for i in range(4):
        x = x + reference.vector_field(agent.target_actor, obs, x, np.full((1, 1), i / 4)) / 4
    np.testing.assert_allclose(agent.sample_actions(obs, key).reshape(1, 6), np.clip(x, -1, 1), rtol=1e-5)


def test_distillation_losses_match_numpy():
    noisy = np.array([[0.5, -1.0, 2.0], [0.1, 0.3, -0.4]], np.float32)
    clean = np.array([[0.7, 0.0, -1.0], [0.2, 0.1, 0.9]], np.float32)
    weights = np.array([1.0, 0.0, 1.0], np.float32)
    mse = guidance.distillation_loss(noisy, clean, weights, "mse", INV_TEMP, CLIP)
    np.testing.assert_allclose(float(mse), ((noisy - clean) ** 2 * weights).mean(), rtol=1e-6)
    delta = (clean - noisy) * INV_TEMP  # 0.4 (at the clip: exponential), 2.0 and 2.6 (linear), ...
    expected = np.where(delta > CLIP, delta, np.exp(np.minimum(delta, CLIP)) + noisy * INV_TEMP)
    assert (delta > CLIP).any() and (delta <= CLIP).any()
    linex = guidance.distillation_loss(noisy, clean, weights, "linex", INV_TEMP, CLIP)
    np.testing.assert_allclose(float(linex), (expected * weights).mean(), rtol=1e-6)


def test_linex_critic_loss_matches_numpy():
    """TD at u = 1 from a guided next chunk, plus noisy_coef x LINEX between Q(s, x_u, u) and Q'(s, a, 1)."""
    agent, batch = make("linex"), batch_for(3)
    noise = {k: np.asarray(v) for k, v in agent.draw_noise(jax.random.PRNGKey(3), 4).items()}
    loss, info = agent.critic_loss(batch, agent.params, noise)

    next_obs, obs = batch["next_observations"][:, -1], batch["observations"]
    next_qs = np_q(
        agent.target_critic, next_obs, np_guided(agent, next_obs, noise["next_actions"], "linex"), 1.0
    )
    target = batch["rewards"][:, -1] + DISCOUNT**3 * batch["masks"][:, -1] * (
        next_qs.mean(0) - 0.5 * next_qs.std(0)
    )
    actions, last_valid = batch["actions"].reshape(4, -1), batch["valid"][:, -1]
    td = ((np_q(agent.params["critic"], obs, actions, 1.0) - target) ** 2 * last_valid).mean()
    u = noise["noisy_times"]
    noisy_qs = np_q(agent.params["critic"], obs, (1 - u) * noise["noisy_x0"] + u * actions, u)
    delta = (np_q(agent.target_critic, obs, actions, 1.0) - noisy_qs) * INV_TEMP
    linex = (
        np.where(delta > CLIP, delta, np.exp(np.minimum(delta, CLIP)) + noisy_qs * INV_TEMP) * last_valid
    ).mean()
    np.testing.assert_allclose(float(info["critic_loss"]), td, rtol=1e-4)
    np.testing.assert_allclose(float(info["noisy_critic_loss"]), linex, rtol=1e-4)
    np.testing.assert_allclose(float(loss), td + NOISY * linex, rtol=1e-4)


def test_update_polyak_averages_the_critic_and_the_guided_flow():
    agent = make("mse")
    updated, info = jax.jit(lambda a, b: a.update(b))(agent, batch_for(3))
    for name, target in (("critic", "target_critic"), ("actor", "target_actor")):
        expected = jax.tree_util.tree_map(
            lambda p, t: 0.005 * p + 0.995 * t, agent.params[name], getattr(agent, target)
        )
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
            getattr(updated, target),
            expected,
        )
    assert np.isfinite(float(info["critic/noisy_critic_loss"])) and np.isfinite(
        float(info["actor/flow_loss"])
    )


@pytest.mark.slow  # a minute of CPU (guided sampling compiled in act and update); FAWAC's runs by default
def test_a_guidance_coef_vector_member_is_the_run_alone_through_a_resume(
    tiny_dataset_dir, tmp_path, monkeypatch
):
    assert_swept_member_is_alone(
        tiny_dataset_dir,
        tmp_path,
        monkeypatch,
        "cgql_mse",
        ("guidance_coef", 0.1, 1.0),
        None,
        "agent.num_qs=2",
        "agent.flow_steps=2",
    )
