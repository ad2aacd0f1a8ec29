"""IQL's expectile value, critic and AWR losses against NumPy on a hand-built batch; the five
offline-to-online baselines (IQL, ReBRAC, IFQL, IFQL-n, QC-IFQL) end to end as vectors of two seeds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from agents import critic as td
from agents import iql
from launch import train as train_module
from launch.engine import acting, evaluation, settings, vector
from tests import reference
from tests.helpers import compose_config
from tests.test_qc_fql import DISCOUNT, batch_for
from tests.test_train import TINY, rows


def make(algorithm="iql", chunk_length=1, **overrides):
    config = dict(algorithm=algorithm, chunk_length=chunk_length, hidden_dims=[8, 8], discount=DISCOUNT)
    config.update(overrides)
    agent = agents.make_agent(config, seed=0, obs_dim=2, action_dim=2)
    # A target critic that differs from the online one, so the test sees which is used where.
    return agent.replace(target_critic=jax.tree_util.tree_map(lambda x: x + 0.1, agent.target_critic))


def np_value(params, observations):
    return reference.mlp(params["params"]["MLP_0"], observations)[:, 0]


def np_actor(params, observations):
    """agents.networks.Actor: activated hidden layers, then the Dense head."""
    features = reference.gelu(reference.mlp(params["params"]["MLP_0"], observations))
    head = params["params"]["Dense_0"]
    return features @ np.asarray(head["kernel"]) + np.asarray(head["bias"])


def np_expectile(diff, expectile, weights):
    return np.mean(
        [(expectile if d >= 0 else 1 - expectile) * d**2 * w for d, w in zip(diff, weights, strict=True)]
    )


def test_expectile_loss_weighs_positive_errors_by_the_expectile():
    diff = np.array([-2.0, -0.5, 0.0, 0.5, 3.0], np.float32)
    weights = np.array([1.0, 1.0, 1.0, 0.0, 1.0], np.float32)
    loss = float(td.expectile_loss(jnp.asarray(diff), 0.9, jnp.asarray(weights)))
    np.testing.assert_allclose(loss, np_expectile(diff, 0.9, weights), rtol=1e-6)
    np.testing.assert_allclose(loss, (0.1 * 4 + 0.1 * 0.25 + 0.9 * 9) / 5, rtol=1e-6)


@pytest.mark.parametrize("chunk_length", [1, 3])
def test_value_and_critic_losses_match_numpy(chunk_length):
    agent = make(chunk_length=chunk_length, expectile=0.7)
    batch = batch_for(chunk_length)
    obs, valid = batch["observations"], batch["valid"][:, -1]
    actions = batch["actions"].reshape(4, -1)

    loss, info = agent.value_loss(batch, agent.params)
    target_q = reference.critic(agent.target_critic, obs, actions).min(0)
    v = np_value(agent.params["value"], obs)
    np.testing.assert_allclose(float(loss), np_expectile(target_q - v, 0.7, valid), rtol=1e-5)
    np.testing.assert_allclose(float(info["v_mean"]), v.mean(), rtol=1e-5)

    loss, info = agent.critic_loss(batch, agent.params)
    next_v = np_value(agent.params["value"], batch["next_observations"][:, -1])
    target = batch["rewards"][:, -1] + DISCOUNT**chunk_length * batch["masks"][:, -1] * next_v
    qs = reference.critic(agent.params["critic"], obs, actions)
    np.testing.assert_allclose(float(loss), ((qs - target) ** 2 * valid).mean(), rtol=1e-5)
    if chunk_length == 3:  # a chunk crossing an episode end counts 0; one reaching the success bootstraps 0
        assert valid[0] == 0 and batch["masks"][1, -1] == 0


def test_awr_weights_are_exponentiated_advantages_clipped_at_100():
    advantages = np.array([-1.0, 0.0, 0.5, 2.0, 50.0], np.float32)
    weights = np.asarray(iql.awr_weights(jnp.asarray(advantages), 2.0))
    np.testing.assert_allclose(weights, np.minimum(np.exp(2.0 * advantages), 100.0), rtol=1e-6)
    assert weights[-1] == 100.0 and weights[-2] == pytest.approx(np.exp(4.0), rel=1e-6)


def test_actor_loss_matches_numpy_with_clipped_and_unclipped_weights():
    agent = make(alpha=300.0)
    batch = batch_for(1, starts=(0, 1, 2, 3, 5, 7, 9, 11))
    loss, info = agent.actor_loss(batch, agent.params)

    obs, actions = batch["observations"], batch["actions"][:, 0]
    advantages = reference.critic(agent.params["critic"], obs, actions).min(0) - np_value(
        agent.params["value"], obs
    )
    weights = np.exp(np.minimum(300.0 * advantages, np.log(100.0)))  # min(exp(.), 100) without overflow
    means = np_actor(agent.params["actor"], obs)
    log_probs = -0.5 * ((actions - means) ** 2).sum(-1) - np.log(2 * np.pi)
    np.testing.assert_allclose(float(loss), -(weights * log_probs).mean(), rtol=1e-4)
    np.testing.assert_allclose(float(info["adv"]), advantages.mean(), rtol=1e-4, atol=1e-6)
    assert 0 < np.sum(np.isclose(weights, 100.0)) < len(weights)  # both sides of the clip are exercised


def test_each_loss_reaches_only_its_own_network():
    agent = make()
    batch = batch_for(1)
    for loss, own in (("value_loss", "value"), ("critic_loss", "critic"), ("actor_loss", "actor")):
        grads = jax.grad(lambda p, loss=loss: getattr(agent, loss)(batch, p)[0])(agent.params)
        for name, tree in grads.items():
            norm = float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(tree))))
            assert (norm > 0) == (name == own), (loss, name)


def test_update_steps_every_network_and_polyak_averages_only_the_critic():
    agent = make()
    new, info = jax.jit(lambda a, b: a.update(b))(agent, batch_for(1))
    tau = agent.config.tau
    expected = jax.tree_util.tree_map(
        lambda p, t: tau * p + (1 - tau) * t,
        agent.params["critic"],
        agent.target_critic,  # pre-step params
    )
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), new.target_critic, expected
    )
    for name in ("critic", "value", "actor"):
        before, after = (jax.tree_util.tree_leaves(a.params[name])[0] for a in (agent, new))
        assert not np.allclose(before, after), name
    assert {"value/value_loss", "critic/critic_loss", "actor/actor_loss", "grad/norm"} <= set(info)


def test_exploration_adds_unit_noise_and_evaluation_takes_the_mean():
    agent = make()
    observations = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (5, 2)))
    key = jax.random.PRNGKey(2)
    means = np_actor(agent.params["actor"], observations)
    noise = np.asarray(jax.random.normal(key, (5, 2)))
    sampled = np.asarray(agent.sample_actions(jnp.asarray(observations), key))
    np.testing.assert_allclose(sampled[:, 0], np.clip(means + noise, -1, 1), rtol=1e-5, atol=1e-6)
    evaluated = np.asarray(agent.eval_actions(jnp.asarray(observations), key))
    np.testing.assert_allclose(evaluated[:, 0], np.clip(means, -1, 1), rtol=1e-5, atol=1e-6)
    assert sampled.shape == evaluated.shape == (5, 1, 2)


def test_evaluation_acts_with_the_evaluation_policy():
    agent = make()
    observations, keys = jnp.ones((2, 2)), jax.random.split(jax.random.PRNGKey(0), 2)
    stacked = vector.stack([agent, agent])
    carries = acting.stack_carries([acting.initial_carry(stacked, observations[0], None)] * 2)
    expected = np.stack([agent.eval_actions(observations[i : i + 1], keys[i])[0, 0] for i in range(2)])
    evaluated = acting.act_runs(stacked, observations, carries, keys, evaluation=True)[0]
    np.testing.assert_allclose(evaluated, expected, atol=1e-6)
    assert not np.allclose(acting.act_runs(stacked, observations, carries, keys)[0], expected, atol=1e-6)


@pytest.mark.parametrize(
    ("domain", "alpha"),
    [
        ("cube-double", 0.3),
        ("cube-triple", 0.3),
        ("cube-quadruple", 0.3),
        ("scene", 10.0),
        ("puzzle-3x3", 10.0),
    ],
)
def test_awr_alpha_follows_the_paper_per_domain(domain, alpha):
    cfg = compose_config("agent=iql")
    config = agents.make_config(settings.agent_settings(cfg, domain))
    assert (config.alpha, config.expectile, config.chunk_length, config.q_agg) == (alpha, 0.9, 1, "min")
    cfg.agent.alpha = 1.0
    assert settings.agent_settings(cfg, domain)["alpha"] == 1.0


@pytest.mark.parametrize("agent_name", ["iql", "rebrac", "ifql", "ifql_n", "qc_ifql"])
def test_offline_to_online_vector_of_two_seeds(tiny_dataset_dir, tmp_path, monkeypatch, agent_name):
    overrides = [
        f"agent={agent_name}",
        "agent.num_samples=4",
        "agent.flow_steps=3",
        "seed=[0,1]",
        "env=pointmaze",
        f"env.dataset_dir={tiny_dataset_dir}",
        "env.download=false",
        "logger.mode=disabled",
        *TINY,
    ]
    if agent_name in ("iql", "rebrac"):  # no flow
        overrides = [o for o in overrides if not o.startswith(("agent.num_samples", "agent.flow_steps"))]
    evaluations = {"queries": 0}
    original = evaluation.acting.act_runs

    def counting(agents, *args, evaluation=False):
        evaluations["queries"] += evaluation and hasattr(agents, "eval_actions")
        return original(agents, *args, evaluation=evaluation)

    monkeypatch.setattr(evaluation.acting, "act_runs", counting)
    run = train_module.train(compose_config(*overrides), tmp_path)
    # IQL and ReBRAC evaluate without exploration noise; IFQL's best-of-N is its evaluation policy too
    assert (evaluations["queries"] > 0) == (agent_name in ("iql", "rebrac"))
    loss = "actor/bc_flow_loss" if "ifql" in agent_name else "actor/actor_loss"
    assert [member.seed for member in run.members] == [0, 1]
    for member in run.members:
        logged = rows(member.run_dir)
        assert [row["phase"] for row in logged if "eval/success" in row] == ["offline"] * 2 + ["online"] * 2
        for phase in ("offline", "online"):
            assert any(f"{phase}/{loss}" in row and f"{phase}/critic/q_mean" in row for row in logged), phase
    assert type(run.agent).__module__ == agents.ALGORITHMS[run.cfg.agent.algorithm]
    params = jax.tree_util.tree_leaves(run.agent.params)[0]
    assert params.shape[0] == 2 and not np.allclose(params[0], params[1])  # two runs, two seeds
