"""QC (best-of-N) and its behaviour models against NumPy on hand-built inputs, plus a two-mode fit."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import agents
from agents import behavior as bm
from agents import best_of_n as bon
from agents import ddpm, qc
from launch import train as train_module
from launch.engine import settings
from tests import reference
from tests.helpers import compose_config
from tests.test_qc_fql import DISCOUNT, batch_for, np_euler
from tests.test_train import TINY, rows


def make(behavior="flow", chunk_length=3, action_chunking=True, num_samples=5, **overrides):
    """Tiny networks and few sampling steps, so that compiling stays cheap."""
    config = dict(
        algorithm="qc",
        chunk_length=chunk_length,
        action_chunking=action_chunking,
        hidden_dims=[8, 8],
        num_samples=num_samples,
        behavior=behavior,
        discount=DISCOUNT,
        flow_steps=4,
        diffusion_steps=4,
    )
    config.update(overrides)
    agent = agents.make_agent(config, seed=0, obs_dim=2, action_dim=2)
    # A target critic that differs from the online one, so the test sees which is used where.
    target = jax.tree_util.tree_map(lambda x: x + 0.1, agent.target_critic)
    return agent.replace(target_critic=target)


def to_numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


class HandCritic(nn.Module):
    """Two members whose values are known functions of the chunk: -||a - 0.3||^2 and sum(a) + s_0; no encoder
    (agents.networks.encode hands it the observations)."""

    encoder: None = None

    @nn.compact
    def __call__(self, observations, actions, encoded: bool = False):
        return jnp.stack([-jnp.square(actions - 0.3).sum(-1), actions.sum(-1) + observations[..., 0]])


def hand_q(observations, actions, q_agg):
    """HandCritic in NumPy, reduced over its two members: (batch, num_samples)."""
    qs = np.stack([-((actions - 0.3) ** 2).sum(-1), actions.sum(-1) + observations[:, None, 0]])
    return qs.mean(0) if q_agg == "mean" else qs.min(0)


@pytest.mark.parametrize(("behavior", "q_agg"), [("flow", "mean"), ("flow", "min"), ("diffusion", "mean")])
def test_best_of_n_executes_the_candidate_the_critic_scores_highest(behavior, q_agg):
    agent = make(behavior, num_samples=16, q_agg=q_agg)
    agent = agent.replace(critic_net=HandCritic(), params={**agent.params, "critic": {}})
    observations = jax.random.normal(jax.random.PRNGKey(1), (6, 2))
    key = jax.random.PRNGKey(2)
    actions = np.asarray(jax.jit(lambda a, o, k: a.sample_actions(o, k))(agent, observations, key))

    noise = agent.behavior.sampling_noise(key, (6, 16))
    candidates = jax.jit(bon.candidates, static_argnums=(0, 4))(
        agent.behavior, agent.params["behavior"], observations, noise, 16
    )
    candidates = np.asarray(candidates)
    best = hand_q(np.asarray(observations), candidates, q_agg).argmax(1)
    np.testing.assert_allclose(actions.reshape(6, -1), candidates[np.arange(6), best], rtol=1e-5, atol=1e-6)
    assert actions.shape == (6, 3, 2) and len(set(best)) > 1  # not always the first candidate


def drop_sample_axis(noise):
    """Sampling noise for (batch, 1) -> the same noise for (batch,): the axis after any per-step axis."""
    if isinstance(noise, dict):
        return {key: value[:, 0] if key == "initial" else value[:, :, 0] for key, value in noise.items()}
    return noise[:, 0]


@pytest.mark.parametrize("behavior", ["flow", "diffusion"])
def test_one_sample_is_plain_behaviour_sampling(behavior):
    agent = make(behavior, num_samples=1)
    observations = jax.random.normal(jax.random.PRNGKey(1), (4, 2))
    key = jax.random.PRNGKey(3)
    actions = agent.sample_actions(observations, key)
    noise = drop_sample_axis(agent.behavior.sampling_noise(key, (4, 1)))
    plain = agent.behavior.sample(agent.params["behavior"], observations, noise)
    np.testing.assert_array_equal(np.asarray(actions).reshape(4, -1), np.asarray(plain))
    if behavior == "flow":
        expected = np_euler(agent.params["behavior"], np.asarray(observations), np.asarray(noise), 4)
        np.testing.assert_allclose(np.asarray(plain), expected, rtol=1e-5, atol=1e-6)


def np_best_of_n(agent, critic_params, observations, noise):
    """Best-of-N of the flow behaviour model under `critic_params`, in NumPy: (batch, policy_dim)."""
    batch, num_samples, dim = noise.shape
    repeated = np.repeat(observations, num_samples, axis=0)
    candidates = np_euler(agent.params["behavior"], repeated, noise.reshape(-1, dim), agent.config.flow_steps)
    qs = reference.critic(critic_params, repeated, candidates).reshape(-1, batch, num_samples)
    scores = qs.mean(0) if agent.config.q_agg == "mean" else qs.min(0)
    return candidates.reshape(batch, num_samples, dim)[np.arange(batch), scores.argmax(1)]


@pytest.mark.parametrize(("q_agg", "action_chunking"), [("mean", True), ("min", True), ("mean", False)])
def test_critic_loss_matches_numpy(q_agg, action_chunking):
    agent = make(q_agg=q_agg, action_chunking=action_chunking)
    # an independently initialised target critic, whose favourite candidates differ from the online one's
    dim = agent.policy_dim
    agent = agent.replace(
        target_critic=agent.critic_net.init(jax.random.PRNGKey(9), jnp.zeros((1, 2)), jnp.zeros((1, dim)))
    )
    batch = batch_for(3)
    noise = to_numpy(agent.draw_noise(jax.random.PRNGKey(3), 4))
    loss, info = jax.jit(agent.critic_loss)(batch, agent.params, noise)

    next_obs = batch["next_observations"][:, -1]
    next_actions = np_best_of_n(agent, agent.params["critic"], next_obs, noise["next_actions"])
    next_qs = reference.critic(agent.target_critic, next_obs, next_actions)
    next_q = next_qs.mean(0) if q_agg == "mean" else next_qs.min(0)
    target = batch["rewards"][:, -1] + DISCOUNT**3 * batch["masks"][:, -1] * next_q
    actions = batch["actions"].reshape(4, -1) if action_chunking else batch["actions"][:, 0]
    qs = reference.critic(agent.params["critic"], batch["observations"], actions)
    expected = ((qs - target) ** 2 * batch["valid"][:, -1]).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(info["q_mean"]), qs.mean(), rtol=1e-5)
    assert next_actions.shape == (4, 6 if action_chunking else 2)
    # the online critic picks a' and the target critic scores it; the target critic would pick differently
    picked_by_target = np_best_of_n(agent, agent.target_critic, next_obs, noise["next_actions"])
    assert not np.allclose(picked_by_target, next_actions)


def np_alpha_bars(steps, schedule):
    return np.cumprod(1.0 - ddpm.beta_schedule(schedule, steps))


@pytest.mark.parametrize("action_chunking", [True, False])
def test_diffusion_loss_matches_numpy(action_chunking):
    agent = make("diffusion", action_chunking=action_chunking, diffusion_steps=7)
    batch = batch_for(3)
    all_noise = to_numpy(agent.draw_noise(jax.random.PRNGKey(4), 4))
    loss, info = agent.behavior_loss(batch, agent.params, all_noise)
    noise = all_noise["behavior"]

    steps = 3 if action_chunking else 1
    x0 = batch["actions"][:, :steps].reshape(4, -1)
    alpha_bar = np_alpha_bars(7, "cosine")[noise["steps"]][:, None]
    x_t = np.sqrt(alpha_bar) * x0 + np.sqrt(1 - alpha_bar) * noise["eps"]
    times = (noise["steps"][:, None] + 1) / 7
    pred = reference.vector_field(agent.params["behavior"], batch["observations"], x_t, times)
    error = ((pred - noise["eps"]) ** 2).reshape(4, steps, 2)
    weights = batch["valid"][..., None] if action_chunking else 1.0
    np.testing.assert_allclose(float(loss), (error * weights).mean(), rtol=1e-5)
    np.testing.assert_allclose(float(info["bc_diffusion_loss"]), float(loss))
    assert noise["steps"].min() >= 0 and noise["steps"].max() < 7


def test_beta_schedules_reach_pure_noise_in_few_steps():
    steps = 10
    cosine = np_alpha_bars(steps, "cosine")
    t = np.arange(steps + 1) / steps
    expected = np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(cosine[:-1], (expected / expected[0])[1:-1], rtol=1e-10)
    np.testing.assert_allclose(np_alpha_bars(steps, "linear")[-1], np.exp(-(0.1 + 0.5 * 19.9)), rtol=1e-10)
    for schedule in ("cosine", "linear"):
        alpha_bars = np_alpha_bars(steps, schedule)
        assert np.all(np.diff(alpha_bars) < 0) and alpha_bars[-1] < 1e-3 and alpha_bars[0] > 0.85
    with pytest.raises(ValueError, match="diffusion_schedule must be one of .* got 'quadratic'"):
        ddpm.beta_schedule("quadratic", steps)


def np_diffusion_sample(params, observations, noise, steps, schedule, sampler):
    """Ho et al.'s posterior step / Song et al.'s DDIM step with the predicted x0 clipped, in NumPy."""
    betas = ddpm.beta_schedule(schedule, steps)
    alpha_bars = np.cumprod(1 - betas)
    x = noise["initial"]
    for t in range(steps - 1, -1, -1):
        prev = alpha_bars[t - 1] if t > 0 else 1.0
        eps = reference.vector_field(params, observations, x, np.full((len(x), 1), (t + 1) / steps))
        x0 = np.clip((x - np.sqrt(1 - alpha_bars[t]) * eps) / np.sqrt(alpha_bars[t]), -1, 1)
        if sampler == "ddim":
            x = np.sqrt(prev) * x0 + np.sqrt(1 - prev) * eps
        else:
            beta, alpha_bar = betas[t], alpha_bars[t]
            mean = (np.sqrt(prev) * beta * x0 + np.sqrt(1 - beta) * (1 - prev) * x) / (1 - alpha_bar)
            std = np.sqrt(beta * (1 - prev) / (1 - alpha_bar))
            x = mean + std * noise["steps"][t] if t > 0 else mean
    return np.clip(x, -1, 1)


@pytest.mark.parametrize(("schedule", "sampler"), [("cosine", "ddpm"), ("linear", "ddim")])
def test_diffusion_sampling_matches_numpy(schedule, sampler):
    agent = make("diffusion", diffusion_steps=6, diffusion_schedule=schedule, diffusion_sampler=sampler)
    observations = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (5, 2)))
    noise = to_numpy(agent.behavior.sampling_noise(jax.random.PRNGKey(2), (5,)))
    samples = agent.behavior.sample(agent.params["behavior"], observations, noise)
    expected = np_diffusion_sample(agent.params["behavior"], observations, noise, 6, schedule, sampler)
    np.testing.assert_allclose(np.asarray(samples), expected, rtol=1e-4, atol=1e-5)
    assert ("steps" in noise) == (sampler == "ddpm")


@pytest.mark.parametrize("behavior", ["flow", "diffusion"])
def test_update_steps_adam_and_polyak_averages_the_target(behavior):
    agent = make(behavior)
    new, info = jax.jit(lambda a, b: a.update(b))(agent, batch_for(3))
    tau = agent.config.tau
    expected = jax.tree_util.tree_map(
        lambda p, t: tau * p + (1 - tau) * t, agent.params["critic"], agent.target_critic
    )
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), new.target_critic, expected
    )
    for name in ("critic", "behavior"):
        before, after = (jax.tree_util.tree_leaves(a.params[name])[0] for a in (agent, new))
        assert not np.allclose(before, after), name
    assert set(info) == {
        "critic/critic_loss",
        "critic/q_mean",
        "critic/q_max",
        "critic/q_min",
        f"actor/bc_{behavior}_loss",
        "grad/norm",
    }
    assert all(np.isfinite(float(v)) for v in info.values())


def is_bimodal(samples):
    """>= 25% of the samples within 0.2 of each of -0.7 and +0.7, <= 10% in (-0.3, 0.3)."""
    near = [np.mean(np.abs(samples - mode) < 0.2) for mode in (-0.7, 0.7)]
    return min(near) >= 0.25 and np.mean(np.abs(samples) < 0.3) <= 0.1


def test_the_two_mode_check_rejects_a_gaussian_fit():
    samples = np.random.default_rng(0).normal(0.0, 0.7, 4000)  # the moment-matched Gaussian of the data
    assert not is_bimodal(np.clip(samples, -1, 1))
    assert is_bimodal(np.random.default_rng(0).choice([-0.7, 0.7], 4000))


@pytest.mark.parametrize("behavior", ["flow", "diffusion"])
def test_behaviour_model_keeps_both_modes_of_the_data(behavior):
    config = qc.Config(chunk_length=1, hidden_dims=(64, 64), behavior=behavior, diffusion_steps=10)
    model = bm.make(config, policy_dim=1)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 1)), jnp.zeros((1, 1)))
    optimizer = optax.adam(3e-3)
    observations = jnp.zeros((128, 1))

    def train_step(carry, key):
        params, opt_state = carry
        mode_key, noise_key = jax.random.split(key)
        actions = jnp.where(jax.random.bernoulli(mode_key, 0.5, (128, 1, 1)), 0.7, -0.7)
        grads = jax.grad(model.loss)(params, observations, actions, model.draw_noise(noise_key, 128), None)
        updates, opt_state = optimizer.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), None

    keys = jax.random.split(jax.random.PRNGKey(1), {"flow": 600, "diffusion": 1500}[behavior])
    train = jax.jit(lambda carry, keys: jax.lax.scan(train_step, carry, keys)[0])
    params, _ = train((params, optimizer.init(params)), keys)
    noise = model.sampling_noise(jax.random.PRNGKey(2), (2000,))
    samples = np.asarray(model.sample(params, jnp.zeros((2000, 1)), noise))[:, 0]
    assert is_bimodal(samples), np.histogram(samples, bins=10, range=(-1, 1))[0]


@pytest.mark.parametrize(
    ("agent_name", "domain", "num_samples", "chunk_length", "action_chunking"),
    [
        ("qc", "puzzle-3x3", 64, 5, True),
        ("qc", "cube-double", 32, 5, True),
        ("qc", "scene", 32, 5, True),
        ("bfn", "puzzle-3x3", 4, 1, True),
        ("bfn", "cube-triple", 4, 1, True),
        ("bfn_n", "cube-double", 4, 5, False),
    ],
)
def test_paper_settings_per_agent_and_domain(agent_name, domain, num_samples, chunk_length, action_chunking):
    cfg = compose_config(f"agent={agent_name}")
    values = settings.agent_settings(cfg, domain)
    assert (values["num_samples"], values["chunk_length"], values["action_chunking"]) == (
        num_samples,
        chunk_length,
        action_chunking,
    )
    config = agents.make_config(values)
    assert isinstance(config, qc.Config) and config.behavior == "flow" and config.q_agg == "mean"
    cfg.agent.num_samples = 7
    assert settings.agent_settings(cfg, domain)["num_samples"] == 7


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        (
            "behavior",
            "gaussian",
            r"agent setting behavior='gaussian': expected one of \('flow', 'diffusion'\)",
        ),
        ("diffusion_sampler", "euler", r"diffusion_sampler='euler': expected one of \('ddpm', 'ddim'\)"),
        ("num_samples", 0, r"invalid agent setting num_samples=0: expected an integer >= 1"),
    ],
)
def test_invalid_settings_fail_naming_the_setting(setting, value, message):
    with pytest.raises(ValueError, match=message):
        agents.make_config({"algorithm": "qc", setting: value})


@pytest.mark.parametrize("behavior", ["flow", "diffusion"])
def test_offline_to_online_run_with_each_behaviour_model(tiny_dataset_dir, tmp_path, behavior):
    overrides = [
        "agent=qc",
        f"agent.behavior={behavior}",
        "agent.num_samples=4",
        "agent.flow_steps=3",
        "agent.diffusion_steps=3",
        "env=pointmaze",
        f"env.dataset_dir={tiny_dataset_dir}",
        "env.download=false",
        "logger.mode=disabled",
        *TINY,
    ]
    cfg = compose_config(*overrides)
    run = train_module.train(cfg, tmp_path)
    logged = rows(tmp_path)
    phases = [row["phase"] for row in logged if "eval/success" in row]
    assert phases == ["offline", "offline", "online", "online"]
    for phase in ("offline", "online"):
        keys = (f"{phase}/actor/bc_{behavior}_loss", f"{phase}/critic/q_mean")
        assert any(all(key in row for key in keys) for row in logged), phase
    assert isinstance(run.agent, qc.Agent) and run.agent.config.behavior == behavior
