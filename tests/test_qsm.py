"""QSM and DAC (agents/qsm.py) and the shared DDPM (agents/ddpm.py) against NumPy on the hand-built batch of
test_qc_fql: the schedules, the forward process and posterior, the noise network, the sampler as the authors
write it, the critic loss and both actor losses (the critic's action gradient by central differences); a
vector member is its single run through a resume."""

import math

import jax
import numpy as np
import pytest

import agents
from agents import ddpm, step
from tests import reference
from tests.test_qc_fql import DISCOUNT, batch_for
from tests.test_vector import assert_swept_member_is_alone

RHO, INV_TEMP, ALPHA, STEPS = 0.5, 2.0, 0.5, 4


def make(**overrides):
    config = dict(
        algorithm="qsm",
        chunk_length=3,
        hidden_dims=[8, 8],
        num_qs=3,
        discount=DISCOUNT,
        diffusion_steps=STEPS,
        time_dim=6,
        inv_temp=INV_TEMP,
        alpha=ALPHA,
    )
    agent = agents.make_agent({**config, **overrides}, seed=0, obs_dim=2, action_dim=2)
    target = jax.tree_util.tree_map(lambda x: x + 0.1, agent.target_critic)  # tells the critics apart
    return agent.replace(target_critic=target)


def noise_for(agent, seed):
    return {k: np.asarray(v) for k, v in agent.draw_noise(jax.random.PRNGKey(seed), 4).items()}


# ---- NumPy references ------------------------------------------------------------------------------------


def np_vp_betas(steps, beta_max):
    """1 - exp(-b_min / T - (b_max - b_min) (2t - 1) / (2 T^2)), t = 1..T, b_min = 0.1 (the authors'
    utils/diffusion.py vp_beta_schedule with b_max = 10)."""
    t = np.arange(1, steps + 1)
    return 1 - np.exp(-0.1 / steps - 0.5 * (beta_max - 0.1) * (2 * t - 1) / steps**2)


def np_schedule(steps):
    """The authors' arrays: betas with a zero prepended, alphas = 1 - betas, alpha_hats their product."""
    betas = np.concatenate([[0.0], np_vp_betas(steps, 10.0)])
    return betas, 1 - betas, np.cumprod(1 - betas)


def np_mish_mlp(params, x, layer_norm=False):
    """agents.networks.MLP with mish: x tanh(log(1 + e^x)) after every hidden Dense."""
    num_layers = len([name for name in params if name.startswith("Dense_")])
    for i in range(num_layers):
        x = x @ np.asarray(params[f"Dense_{i}"]["kernel"]) + np.asarray(params[f"Dense_{i}"]["bias"])
        if i + 1 < num_layers:
            x = x * np.tanh(np.logaddexp(0.0, x))
            if layer_norm:
                x = reference.layer_norm(
                    x, params[f"LayerNorm_{i}"]["scale"], params[f"LayerNorm_{i}"]["bias"]
                )
    return x


def np_noise(params, observations, x, times):
    """networks.DDPMNoise: [cos, sin](2 pi t W^T) -> mish MLP -> condition; mish MLP of [x, s, condition]."""
    p = params["params"]
    f = 2 * np.pi * times @ np.asarray(p["FourierFeatures_0"]["kernel"]).T
    condition = np_mish_mlp(p["MLP_0"], np.concatenate([np.cos(f), np.sin(f)], -1))
    return np_mish_mlp(p["MLP_1"], np.concatenate([x, observations, condition], -1))


def np_sample(params, observations, x, zs, clip_before, clip_after):
    """The authors' ddpm_sampler written out: t = T..1, x0 = (x - sqrt(1 - ah_t) eps) / sqrt(ah_t); with
    clip_before the clipped x0 goes through the posterior mean, else x = x0; + sqrt(beta_t) z_t for t > 1;
    with clip_after x is clipped."""
    betas, alphas, ah = np_schedule(STEPS)
    for t in range(STEPS, 0, -1):
        eps = np_noise(params, observations, x, np.full((len(x), 1), float(t)))
        x0 = (x - np.sqrt(1 - ah[t]) * eps) / np.sqrt(ah[t])
        if clip_before:
            x0 = np.clip(x0, -1, 1)
            x = (np.sqrt(ah[t - 1]) * betas[t] * x0 + np.sqrt(alphas[t]) * (1 - ah[t - 1]) * x) / (1 - ah[t])
        else:
            x = x0
        if t > 1:
            x = x + np.sqrt(betas[t]) * zs[t - 1]
        if clip_after:
            x = np.clip(x, -1, 1)
    return x


def np_q_grad(critic_params, observations, actions, eps=1e-6):
    """d/da of mean_k Q_k(s, a), row by row, by float64 central differences of reference.critic."""
    params64 = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), critic_params)
    actions = np.asarray(actions, np.float64)
    grad = np.zeros_like(actions)
    for j in range(actions.shape[1]):
        step = np.zeros_like(actions)
        step[:, j] = eps
        up = reference.critic(params64, observations, actions + step).mean(0)
        down = reference.critic(params64, observations, actions - step).mean(0)
        grad[:, j] = (up - down) / (2 * eps)
    return grad


def np_actor_loss(agent, batch, noise, loss_type, use_target):
    """alpha * mean((DDPM error)^valid) + mean((QSM or DAC term)^valid), each chunk's mean over its dims."""
    _, _, ah = np_schedule(STEPS)
    x0 = batch["actions"].reshape(4, -1)
    alpha_bar = ah[noise["steps"]][:, None]
    noisy = np.sqrt(alpha_bar) * x0 + np.sqrt(1 - alpha_bar) * noise["eps"]
    critic = agent.target_critic if use_target else agent.params["critic"]
    q_grad = np_q_grad(critic, batch["observations"], noisy)
    pred = np_noise(
        agent.params["actor"], batch["observations"], noisy, noise["steps"][:, None].astype(float)
    )
    valid = batch["valid"][:, -1]
    bc = (((noise["eps"] - pred) ** 2).mean(-1) ** valid).mean()
    if loss_type == "qsm":
        term = (((-INV_TEMP * q_grad - pred) ** 2).mean(-1) ** valid).mean()
    else:
        term = ((np.sqrt(1 - alpha_bar) * q_grad * pred).mean(-1) ** valid).mean()
    return ALPHA * bc + term, bc, term


# ---- the shared DDPM -------------------------------------------------------------------------------------


def test_schedules_are_the_authors():
    np.testing.assert_allclose(ddpm.beta_schedule("vp", 10), np_vp_betas(10, 10.0), rtol=1e-12)
    np.testing.assert_allclose(ddpm.beta_schedule("linear", 10), np_vp_betas(10, 20.0), rtol=1e-12)
    np.testing.assert_allclose(
        ddpm.beta_schedule("ddpm_linear", 5), [1e-4, 0.005075, 0.01005, 0.015025, 0.02]
    )
    # the authors' cosine normalises alpha_bar by its first value, which cancels in the ratio
    t = np.linspace(0, 10, 11) / 10
    cumprod = np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2
    cumprod = cumprod / cumprod[0]
    np.testing.assert_allclose(
        ddpm.beta_schedule("cosine", 10), np.clip(1 - cumprod[1:] / cumprod[:-1], 0, 0.999)
    )
    levels = ddpm.alpha_bars(ddpm.beta_schedule("vp", 10))
    assert levels.shape == (11,) and levels[0] == 1.0
    np.testing.assert_allclose(levels, np_schedule(10)[2], rtol=1e-12)
    np.testing.assert_allclose(levels[-1], math.exp(-(0.1 + 10.0) / 2), rtol=1e-10)
    with pytest.raises(ValueError, match="diffusion_schedule must be one of .* got 'quadratic'"):
        ddpm.beta_schedule("quadratic", 10)


def test_forward_and_posterior_match_numpy():
    rng = np.random.default_rng(0)
    x0, x, eps = (rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3))
    betas = ddpm.beta_schedule("vp", 6)
    _, alphas, ah = np_schedule(6)
    alpha_bar = np.full((3, 1), ah[4], np.float32)
    np.testing.assert_allclose(
        ddpm.forward(x0, eps, alpha_bar), np.sqrt(ah[4]) * x0 + np.sqrt(1 - ah[4]) * eps, rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(
        ddpm.predicted_x0(x, eps, ah[4]), (x - np.sqrt(1 - ah[4]) * eps) / np.sqrt(ah[4]), rtol=1e-5
    )
    for t in (1, 4, 6):
        b = 1 - alphas[t]
        mean = (np.sqrt(ah[t - 1]) * b * x0 + np.sqrt(alphas[t]) * (1 - ah[t - 1]) * x) / (1 - ah[t])
        np.testing.assert_allclose(ddpm.posterior_mean(x0, x, betas, t), mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ddpm.posterior_variance(betas, t), b * (1 - ah[t - 1]) / (1 - ah[t]))
    assert ddpm.posterior_variance(betas, 1) == 0.0


def test_the_noise_network_matches_numpy():
    agent = make()
    rng = np.random.default_rng(1)
    obs, x = rng.normal(size=(5, 2)), rng.normal(size=(5, 6))
    times = rng.integers(1, STEPS + 1, (5, 1)).astype(np.float32)
    got = agent.noise_net.apply(agent.params["actor"], obs, x, times)
    np.testing.assert_allclose(
        np.asarray(got), np_noise(agent.params["actor"], obs, x, times), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize(("clip_before", "clip_after"), [(False, True), (True, False), (False, False)])
def test_the_sampler_is_the_authors(clip_before, clip_after):
    """QSM's runs clip after each step, DAC's clip the predicted chunk before the posterior step; neither is
    the authors' get_config, whose chunks are not clipped at all."""
    agent = make(clip_sampler_before=clip_before, clip_sampler_after=clip_after)
    # a larger network output than the tiny init gives, so that the clips bite
    actor = jax.tree_util.tree_map(lambda v: v * 3.0, agent.params["actor"])
    rng = np.random.default_rng(2)
    obs, x = rng.normal(size=(5, 2)).astype(np.float32), rng.normal(size=(5, 6)).astype(np.float32)
    zs = rng.normal(size=(STEPS, 5, 6)).astype(np.float32)
    got = np.asarray(agent.policy(actor, obs, x, zs))
    expected = np_sample(actor, obs, x, zs, clip_before, clip_after)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert (np.abs(got).max() <= 1.0) == (clip_before or clip_after)


def test_acting_reshapes_the_sampled_chunk():
    agent = make(clip_sampler_after=True)
    observations = np.random.default_rng(3).normal(size=(5, 2)).astype(np.float32)
    key = jax.random.PRNGKey(4)
    actions = np.asarray(agent.sample_actions(observations, key))
    noise_key, steps_key = jax.random.split(key)
    x = np.asarray(jax.random.normal(noise_key, (5, 6)))
    zs = np.asarray(jax.random.normal(steps_key, (STEPS, 5, 6)))
    expected = np_sample(agent.params["actor"], observations, x, zs, False, True)
    np.testing.assert_allclose(actions, expected.reshape(5, 3, 2), rtol=1e-4, atol=1e-5)


# ---- the losses ------------------------------------------------------------------------------------------


def test_critic_loss_bootstraps_from_the_ddpm_with_mean_minus_rho_std():
    agent, batch = make(clip_sampler_after=True), batch_for(3)
    noise = noise_for(agent, 3)
    loss, _ = agent.critic_loss(batch, agent.params, noise)

    next_obs = batch["next_observations"][:, -1]
    next_actions = np_sample(
        agent.params["actor"], next_obs, noise["next_actions"], noise["next_steps"], False, True
    )
    next_qs = reference.critic(agent.target_critic, next_obs, next_actions)
    target = batch["rewards"][:, -1] + DISCOUNT**3 * batch["masks"][:, -1] * (
        next_qs.mean(0) - RHO * next_qs.std(0)
    )
    qs = reference.critic(agent.params["critic"], batch["observations"], batch["actions"].reshape(4, -1))
    np.testing.assert_allclose(float(loss), ((qs - target) ** 2 * batch["valid"][:, -1]).mean(), rtol=1e-5)


@pytest.mark.parametrize(("loss_type", "use_target"), [("qsm", True), ("dac", True), ("qsm", False)])
def test_actor_loss_matches_numpy(loss_type, use_target):
    agent, batch = make(actor_loss_type=loss_type, use_target_critic_grad=use_target), batch_for(3)
    noise = noise_for(agent, 4)
    assert noise["steps"].min() >= 1 and noise["steps"].max() <= STEPS
    loss, info = agent.actor_loss(batch, agent.params, noise)
    expected, bc, term = np_actor_loss(agent, batch, noise, loss_type, use_target)
    np.testing.assert_allclose(float(info["bc_loss"]), bc, rtol=1e-5)
    np.testing.assert_allclose(float(info["q_score_loss"]), term, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4, atol=1e-6)
    # the critic the gradient is read from matters: the other one gives another loss
    other, _, _ = np_actor_loss(agent, batch, noise, loss_type, not use_target)
    assert abs(other - expected) > 1e-4


def test_a_chunk_crossing_an_episode_end_adds_one_and_no_gradient():
    """The authors' mask raises each chunk's loss to the power valid[h-1]: the invalid chunk (start 2) adds
    x^0 = 1 to both sums, and its actions reach no gradient."""
    agent, batch = make(), batch_for(3)
    assert batch["valid"][0, -1] == 0 and batch["valid"][1:, -1].all()
    noise = noise_for(agent, 5)
    _, info = agent.actor_loss(batch, agent.params, noise)
    valid_only = {key: value[1:] for key, value in batch.items()}
    sub_noise = {**noise, "eps": noise["eps"][1:], "steps": noise["steps"][1:]}
    _, sub_info = agent.actor_loss(valid_only, agent.params, sub_noise)
    np.testing.assert_allclose(float(info["bc_loss"]), (1 + 3 * float(sub_info["bc_loss"])) / 4, rtol=1e-5)
    changed = {**batch, "actions": batch["actions"].copy()}
    changed["actions"][0] = -changed["actions"][0]

    def grads(b):
        return jax.grad(lambda p: agent.actor_loss(b, p, noise)[0])(agent.params)

    for got, want in zip(
        jax.tree_util.tree_leaves(grads(changed)), jax.tree_util.tree_leaves(grads(batch)), strict=True
    ):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-7)
    assert all(float(np.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(grads(batch)["critic"]))


def test_one_update_takes_clipped_adam_and_moves_both_networks():
    agent, batch = make(actor_loss_type="dac", clip_sampler_before=True), batch_for(3)
    assert agent.optimizer is step.clipped_adam(agent.config.lr, 1.0)
    assert make(clip_grad=None).optimizer is step.adam(agent.config.lr)
    updated, info = jax.jit(type(agent).update)(agent, batch)
    for name in ("critic", "actor"):
        moved = jax.tree_util.tree_map(
            lambda a, b: float(np.abs(a - b).max()), updated.params[name], agent.params[name]
        )
        assert max(jax.tree_util.tree_leaves(moved)) > 0
    assert {
        "actor/actor_loss",
        "actor/bc_loss",
        "actor/q_score_loss",
        "critic/critic_loss",
        "grad/norm",
    } <= set(info)


def test_an_unknown_actor_loss_type_is_refused():
    with pytest.raises(ValueError, match=r"actor_loss_type must be one of \('qsm', 'dac'\), got 'awr'"):
        make(actor_loss_type="awr")


def test_an_alpha_vector_member_is_the_run_alone_through_a_resume(tiny_dataset_dir, tmp_path, monkeypatch):
    assert_swept_member_is_alone(
        tiny_dataset_dir,
        tmp_path,
        monkeypatch,
        "dac",
        ("alpha", 0.5, 3.0),
        "offline/actor/actor_loss",
        "agent.num_qs=2",
        "agent.diffusion_steps=2",
        "agent.time_dim=4",
    )
