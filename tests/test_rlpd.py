"""RLPD family: chunk-level SAC losses against NumPy on a hand-built batch, the tanh-Gaussian density,
temperature tuning, symmetric offline/online batches and the online-only configs."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
import buffers
from agents import rlpd, tanh_gaussian
from launch import train as train_module
from launch.engine import settings
from tests import reference
from tests.helpers import compose_config
from tests.test_buffers import hand_built

DISCOUNT = 0.99
TEMPERATURE = 0.3


def make(chunk_length=3, **overrides):
    config = dict(
        algorithm="rlpd",
        chunk_length=chunk_length,
        hidden_dims=[8, 8],
        num_qs=4,
        discount=DISCOUNT,
        **overrides,
    )
    agent = agents.make_agent(config, seed=0, obs_dim=2, action_dim=2)
    # A target critic unlike the online one and a temperature != 1, so the tests see where each enters.
    target = jax.tree_util.tree_map(lambda x: x + 0.1, agent.target_critic)
    params = {**agent.params, "log_temperature": jnp.log(jnp.float32(TEMPERATURE))}
    return agent.replace(target_critic=target, params=params)


def batch_for(chunk_length, starts=(2, 8, 0, 10)):
    """Start 2 crosses the end of the first trajectory, start 8 covers the success at index 10."""
    data = hand_built()
    batch = buffers.gather_chunks(buffers.from_dataset(data), jnp.asarray(starts), chunk_length, DISCOUNT)
    return {key: np.array(value) for key, value in batch.items()}


def noise_for(agent, seed, batch_size=4):
    return {k: np.asarray(v) for k, v in agent.draw_noise(jax.random.PRNGKey(seed), batch_size).items()}


def np_distribution(params, observations):
    """The reference's TanhNormal: a ReLU trunk, separate mean and log-std heads, log-stds clipped to
    [-20, 2] (ColinQiyangLi/qc rlpd_distributions/tanh_normal.py)."""
    actor = params["actor"]["params"]
    trunk = reference.mlp(actor["MLP_0"], observations, rlpd_style=True, activate_final=True)
    means, log_stds = (
        trunk @ np.asarray(actor[h]["kernel"]) + np.asarray(actor[h]["bias"]) for h in ("mean", "log_std")
    )
    return means.astype(np.float64), np.clip(log_stds, -20.0, 2.0).astype(np.float64)


def np_log_density(pre_tanh, means, log_stds):
    """Per-dimension log density of y = tanh(u), u ~ N(mean, std^2), by the textbook change of variables."""
    std = np.exp(log_stds)
    gaussian = -0.5 * ((pre_tanh - means) / std) ** 2 - np.log(std * np.sqrt(2 * np.pi))
    return gaussian - np.log(1.0 - np.tanh(pre_tanh) ** 2)


@pytest.mark.parametrize(("target_subsample", "backup_entropy"), [(None, False), (2, True)])
def test_critic_loss_matches_numpy(target_subsample, backup_entropy):
    agent = make(target_subsample=target_subsample, backup_entropy=backup_entropy)
    batch = batch_for(3)
    noise = noise_for(agent, 3)
    loss, info = agent.critic_loss(batch, agent.params, noise)

    next_obs = batch["next_observations"][:, -1]
    means, log_stds = np_distribution(agent.params, next_obs)
    pre_tanh = means + np.exp(log_stds) * noise["next_actions"]
    next_qs = reference.critic(agent.target_critic, next_obs, np.tanh(pre_tanh), rlpd_style=True)
    if target_subsample is None:
        next_q = next_qs.mean(0)
    else:
        assert len(set(noise["target_critics"].tolist())) == 2
        next_q = next_qs[noise["target_critics"]].min(0)
    if backup_entropy:
        next_q = next_q - TEMPERATURE * np_log_density(pre_tanh, means, log_stds).sum(-1)
    target = batch["rewards"][:, -1] + DISCOUNT**3 * batch["masks"][:, -1] * next_q
    qs = reference.critic(
        agent.params["critic"], batch["observations"], batch["actions"].reshape(4, -1), True
    )
    expected = ((qs - target) ** 2 * batch["valid"][:, -1]).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(info["q_mean"]), qs.mean(), rtol=1e-5)
    # the chunk crossing an episode end has weight 0; the one with a success has mask 0 (no bootstrap)
    assert batch["valid"][0, -1] == 0 and batch["masks"][1, -1] == 0


def test_target_subsets_are_random_pairs_of_distinct_critics():
    agent = make(target_subsample=2)
    subsets = {tuple(sorted(noise_for(agent, seed)["target_critics"].tolist())) for seed in range(40)}
    assert all(len(set(s)) == 2 and set(s) <= set(range(4)) for s in subsets)
    assert len(subsets) == 6  # every pair of the 4 critics is drawn
    with pytest.raises(ValueError, match=r"target_subsample must be null or in \[1, num_qs=4\], got 5"):
        make(target_subsample=5)


def test_actor_loss_matches_numpy_with_the_bc_term_on_the_in_episode_steps():
    agent = make(bc_alpha=0.5)
    batch = batch_for(3)
    batch["actions"][1, 0] = [1.0, -1.0]  # dataset actions on the boundary, where atanh is infinite
    noise = noise_for(agent, 4)
    loss, info = agent.actor_loss(batch, agent.params, noise)

    obs = batch["observations"]
    means, log_stds = np_distribution(agent.params, obs)
    pre_tanh = means + np.exp(log_stds) * noise["actions"]
    log_probs = np_log_density(pre_tanh, means, log_stds).sum(-1)
    q = reference.critic(agent.params["critic"], obs, np.tanh(pre_tanh), rlpd_style=True).mean(0)
    sac = (TEMPERATURE * log_probs - q).mean()
    clip = np.float64(np.float32(1 - 1e-5))
    bc_log_probs = []
    for row in range(4):
        total = 0.0
        for step in range(3):
            if batch["valid"][row, step]:
                dims = slice(2 * step, 2 * step + 2)
                action = np.clip(batch["actions"][row, step].astype(np.float64), -clip, clip)
                total += np_log_density(np.arctanh(action), means[row, dims], log_stds[row, dims]).sum()
        bc_log_probs.append(total)
    bc = -np.mean(bc_log_probs)
    assert batch["valid"][0].tolist() == [1, 1, 0]
    np.testing.assert_allclose(float(info["sac_loss"]), sac, rtol=1e-5)
    np.testing.assert_allclose(float(info["entropy"]), -log_probs.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(info["bc_loss"]), bc, rtol=1e-4)
    np.testing.assert_allclose(float(loss), sac + 0.5 * bc, rtol=1e-4)


@pytest.mark.parametrize(("mean", "log_std"), [(0.3, math.log(0.5)), (-1.0, math.log(2.0))])
def test_tanh_normal_density_integrates_to_one_and_gives_the_gaussian_cdf(mean, log_std):
    std = math.exp(log_std)
    pre_tanh = np.linspace(mean - 10 * std, mean + 10 * std, 400_001, dtype=np.float32)
    log_density = tanh_gaussian.log_prob(pre_tanh[:, None], jnp.float32(mean), jnp.float32(log_std))[:, 0]
    density = np.exp(np.asarray(log_density, np.float64))
    y = np.tanh(pre_tanh.astype(np.float64))  # integrate over the action y, not over u
    np.testing.assert_allclose(np.trapezoid(density, y), 1.0, atol=1e-4)
    for cut in (-0.5, 0.8):
        below = pre_tanh <= cut
        cdf = 0.5 * (1 + math.erf((cut - mean) / (std * math.sqrt(2))))
        np.testing.assert_allclose(np.trapezoid(density[below], y[below]), cdf, atol=2e-4)


def test_tanh_normal_log_prob_stays_exact_where_tanh_rounds_to_one():
    pre_tanh = np.array([0.0, 3.0, 12.0, -12.0, 40.0], np.float32)
    assert float(jnp.tanh(pre_tanh[2])) == 1.0  # the textbook log(1 - tanh^2) would be -inf here
    got = tanh_gaussian.log_prob(jnp.asarray(pre_tanh), jnp.float32(0.5), jnp.float32(1.0))
    std = math.e
    # log(1 - tanh(u)^2) = -2 log cosh(u), exact in float64 for these u
    expected = [
        -0.5 * ((u - 0.5) / std) ** 2 - math.log(std * math.sqrt(2 * math.pi)) + 2 * math.log(math.cosh(u))
        for u in pre_tanh.tolist()
    ]
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


@pytest.fixture(scope="module")
def bandit():
    """A one-state bandit with a learnable quadratic reward (no bootstrap), an agent and its jitted update.

    Tests reuse this agent (via `replace`), so the update compiles once.
    """
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (64, 1, 2)).astype(np.float32)
    batch = {
        "observations": np.zeros((64, 2), np.float32),
        "actions": actions,
        "rewards": (-5 * (actions[..., 0] - 0.5) ** 2 - 5 * actions[..., 1] ** 2).astype(np.float32),
        "masks": np.zeros((64, 1), np.float32),
        "valid": np.ones((64, 1), np.float32),
        "next_observations": np.zeros((64, 1, 2), np.float32),
    }
    agent = agents.make_agent(
        dict(algorithm="rlpd", chunk_length=1, hidden_dims=[32, 32], num_qs=2, lr=3e-2),
        seed=0,
        obs_dim=2,
        action_dim=2,
    )
    return agent, batch, jax.jit(lambda agent, batch: agent.update(batch))


def test_temperature_is_tuned_until_the_entropy_reaches_its_target(bandit):
    """From a too-hot start the temperature falls, from a too-cold one it rises; both settle where the
    policy's entropy is the target -0.5 * action_dim."""
    fresh, batch, update = bandit
    assert fresh.config.target_entropy(2) == -1.0
    final = {}
    for start in (1.0, 1e-3):
        agent = fresh.replace(params={**fresh.params, "log_temperature": jnp.log(jnp.float32(start))})
        entropies = []
        for _ in range(500):  # the cold start overshoots once before it settles
            agent, info = update(agent, batch)
            entropies.append(float(info["actor/entropy"]))
        final[start] = float(jnp.exp(agent.params["log_temperature"]))
        assert abs(np.mean(entropies[-20:]) + 1.0) < 0.2, (start, entropies[-20:])
    assert final[1.0] < 0.5 and final[1e-3] > 0.05
    assert 1 / 1.5 < final[1.0] / final[1e-3] < 1.5


def test_update_steps_every_parameter_group_and_polyak_averages_the_target(bandit):
    agent, batch, update = bandit
    agent = agent.replace(target_critic=jax.tree_util.tree_map(lambda x: x + 0.1, agent.target_critic))
    new, info = update(agent, batch)
    tau = agent.config.tau
    expected = jax.tree_util.tree_map(
        lambda p, t: tau * p + (1 - tau) * t, agent.params["critic"], agent.target_critic
    )
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), new.target_critic, expected
    )
    for group in ("critic", "actor", "log_temperature"):
        changed = jax.tree_util.tree_map(
            lambda a, b: bool(jnp.any(a != b)), new.params[group], agent.params[group]
        )
        assert any(jax.tree_util.tree_leaves(changed)), group
    assert all(np.isfinite(float(value)) for value in info.values())
    assert {"critic/q_mean", "actor/bc_loss", "actor/entropy", "temperature/temperature"} <= set(info)


@pytest.mark.parametrize(
    ("chunk_length", "action_chunking", "steps"), [(3, True, 3), (1, True, 1), (3, False, 1)]
)
def test_sample_actions_shape_bounds_and_deterministic_mean(chunk_length, action_chunking, steps):
    agent = make(chunk_length=chunk_length, action_chunking=action_chunking)
    observations = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32) * 10
    first = agent.sample_actions(observations, jax.random.PRNGKey(0))
    second = agent.sample_actions(observations, jax.random.PRNGKey(1))
    assert first.shape == (5, steps, 2)
    assert float(jnp.abs(first).max()) <= 1.0
    assert not np.allclose(first, second)
    means, _ = np_distribution(agent.params, observations)
    mode = agent.sample_actions(observations, jax.random.PRNGKey(0), deterministic=True)
    np.testing.assert_allclose(np.asarray(mode), np.tanh(means).reshape(5, steps, 2), rtol=1e-5, atol=1e-6)


def test_online_batches_are_half_offline_half_online():
    """Offline actions are tagged +0.5, online ones -0.5 in their first coordinate."""
    data = hand_built()
    data["actions"][:, 0] = 0.5
    replay = buffers.make_replay(
        [data],
        [0],
        [0],
        buffer_size=100,
        online_steps=50,
        offline_ratios=[compose_config("agent=rlpd").offline_ratio],
    ).of_run(0)
    rng = np.random.default_rng(1)
    states = rng.normal(size=(21, 2)).astype(np.float32)
    online = {
        "observations": states[:-1],
        "next_observations": states[1:],
        "actions": np.stack([np.full(20, -0.5), rng.uniform(-1, 1, 20)], -1).astype(np.float32),
        "rewards": np.zeros(20, np.float32),
        "masks": np.ones(20, np.float32),
        "terminals": np.eye(20, dtype=np.float32)[-1],
    }
    replay = replay.insert(online)
    sample = jax.jit(lambda key: replay.sample(key, 32, 3, DISCOUNT, online=True))
    for seed in range(5):
        tags = np.asarray(sample(jax.random.PRNGKey(seed))["actions"][..., 0])
        assert (tags[:16] == 0.5).all() and (tags[16:] == -0.5).all()  # whole chunks from one source


@pytest.mark.parametrize(
    ("name", "chunk_length", "bc_alpha"), [("rlpd", 1, 0.0), ("rlpd_ac", 5, 0.0), ("qc_rlpd", 5, 0.01)]
)
def test_configs_default_to_the_online_only_protocol(name, chunk_length, bc_alpha):
    cfg = compose_config(f"agent={name}")
    protocol = (cfg.agent.offline_pretraining, cfg.offline_ratio, cfg.start_training, cfg.random_action_steps)
    assert protocol == (False, 0.5, 5000, 5000) and cfg.utd_ratio == 1
    settings.validate(cfg)
    config = agents.make_config(settings.agent_settings(cfg, "cube-double"))
    assert isinstance(config, rlpd.Config)
    assert (cfg.agent.name, config.chunk_length, config.bc_alpha) == (name, chunk_length, bc_alpha)
    assert (config.num_qs, config.hidden_dims, config.critic_layer_norm, config.actor_layer_norm) == (
        10,
        (512,) * 4,
        True,
        False,
    )
    assert (config.target_subsample, config.backup_entropy, config.init_temperature) == (None, False, 1.0)
    assert config.target_entropy(5) == -0.5 * chunk_length * 5


def test_command_line_overrides_the_agent_files_protocol():
    cfg = compose_config(
        "agent=rlpd",
        "agent.offline_pretraining=true",
        "offline_ratio=0.25",
        "agent.num_qs=2",
        "start_training=100",
    )
    assert (cfg.agent.offline_pretraining, cfg.offline_ratio, cfg.agent.num_qs) == (True, 0.25, 2)
    assert cfg.random_action_steps == 100  # random actions until training starts


@pytest.mark.parametrize(
    ("name", "chunk_length", "bc_alpha"), [("rlpd", 1, 0.0), ("rlpd_ac", 5, 0.0), ("qc_rlpd", 5, 0.01)]
)
def test_tiny_online_only_run(name, chunk_length, bc_alpha, tiny_dataset_dir, tmp_path):
    """The agent file's protocol (no offline phase even with offline_steps set, 50/50 batches, random actions
    first), tiny sizes."""
    cfg = compose_config(
        f"agent={name}",
        "env=pointmaze",
        f"env.dataset_dir={tiny_dataset_dir}",
        "env.download=false",
        "logger.mode=disabled",
        "agent.hidden_dims=[16,16]",
        "agent.num_qs=2",
        "batch_size=16",
        "offline_steps=30",
        "online_steps=40",
        "random_action_steps=10",
        "start_training=10",
        "eval_interval=20",
        "eval_episodes=1",
        "log_interval=10",
        "save_interval=40",
        "env.max_episode_steps=15",
    )
    run = train_module.train(cfg, tmp_path)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [row for row in logged if "eval/success" in row]
    assert [(row["phase"], row["step"]) for row in evals] == [("online", 20), ("online", 40)]
    assert not any(key.startswith("offline/") for row in logged for key in row)
    assert any("online/actor/sac_loss" in row and "online/temperature/temperature" in row for row in logged)
    assert (run.agent.config.chunk_length, run.agent.config.bc_alpha) == (chunk_length, bc_alpha)
    assert run.counters.offline_step == 0 and run.counters.env_step == 40
    assert int(run.replay.online.count[0]) == 40 and run.replay.offline_ratio == 0.5
