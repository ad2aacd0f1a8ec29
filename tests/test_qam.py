"""QAM, QAM-F and QAM-E losses against NumPy on a hand-built batch (a chunk crossing an episode end, one
with a success); the adjoint's derivatives by central differences in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from agents import critic as td
from launch import train as train_module
from tests import reference
from tests.helpers import compose_config, train_interrupted
from tests.test_qc_fql import DISCOUNT, batch_for
from tests.test_vector import TINY, assert_member_is_alone, rows

FLOW_STEPS = 4


def make(**overrides):
    config = {
        "algorithm": "qam",
        "chunk_length": 3,
        "hidden_dims": [8, 8],
        "num_qs": 3,
        "flow_steps": FLOW_STEPS,
        "inv_temp": 2.0,
        "discount": DISCOUNT,
        **overrides,
    }
    agent = agents.make_agent(config, seed=0, obs_dim=2, action_dim=2)
    # Targets that differ from the online networks, so the test sees which is used where.
    return agent.replace(
        target_critic=jax.tree_util.tree_map(lambda x: x + 0.1, agent.target_critic),
        target_actor_slow=jax.tree_util.tree_map(lambda x: x * 1.2, agent.target_actor_slow),
    )


def noise_of(agent, seed):
    return {k: np.asarray(v) for k, v in agent.draw_noise(jax.random.PRNGKey(seed), 4).items()}


def np_ode(params, obs, x):
    for step in range(FLOW_STEPS):
        x = x + reference.vector_field(params, obs, x, np.full((len(x), 1), step / FLOW_STEPS)) / FLOW_STEPS
    return np.clip(x, -1, 1)


def np_edit_actor(params, inputs):
    p = params["params"]
    trunk = reference.mlp(p["MLP_0"], inputs, activate_final=True)
    heads = [trunk @ np.asarray(p[n]["kernel"]) + np.asarray(p[n]["bias"]) for n in ("mean", "log_std")]
    return heads[0], np.clip(heads[1], -20, 2)


def np_tanh_gaussian(means, log_stds, eps):
    """tanh(u) for u = means + std * eps, and log N(u) - log(1 - tanh(u)^2) summed (the plain formula)."""
    u = means + np.exp(log_stds) * eps
    log_n = -0.5 * eps**2 - log_stds - 0.5 * np.log(2 * np.pi)
    return np.tanh(u), (log_n - np.log(1 - np.tanh(u) ** 2)).sum(-1)


def np_jacobian_t_times(f, x, v, eps=1e-4):
    """v^T df/dx for each row, by central differences: (batch, dim)."""
    out = np.zeros_like(x)
    for j in range(x.shape[1]):
        step = np.zeros_like(x)
        step[:, j] = eps
        out[:, j] = ((f(x + step) - f(x - step)) / (2 * eps) * v).sum(-1)
    return out


@pytest.mark.parametrize("edit_scale", [0.0, 0.1])
def test_critic_loss_bootstraps_from_the_policy_with_mean_minus_rho_std(edit_scale):
    agent = make(edit_scale=edit_scale)
    batch, noise = batch_for(3), noise_of(agent, 3)
    loss, info = agent.critic_loss(
        batch, agent.params, noise, agent.encode_batch(agent.params, batch["observations"])
    )

    next_obs = batch["next_observations"][:, -1]
    next_actions = np_ode(agent.params["actor_fast"], next_obs, noise["next_actions"])
    if edit_scale:
        edit, _ = np_tanh_gaussian(
            *np_edit_actor(agent.params["edit"], np.concatenate([next_obs, next_actions], -1)),
            noise["next_edit"],
        )
        next_actions = np.clip(next_actions + 0.1 * edit, -1, 1)
    next_qs = reference.critic(agent.target_critic, next_obs, next_actions)
    target = batch["rewards"][:, -1] + DISCOUNT**3 * batch["masks"][:, -1] * (
        next_qs.mean(0) - 0.5 * next_qs.std(0)
    )
    qs = reference.critic(agent.params["critic"], batch["observations"], batch["actions"].reshape(4, -1))
    np.testing.assert_allclose(float(loss), ((qs - target) ** 2 * batch["valid"][:, -1]).mean(), rtol=1e-5)


def test_bc_flow_loss_weights_each_chunk_by_its_last_valid():
    agent = make()
    batch, noise = batch_for(3), noise_of(agent, 4)
    loss, _ = agent.flow_loss(
        batch, agent.params, noise, agent.encode_batch(agent.params, batch["observations"])
    )
    x1, x0, u = batch["actions"].reshape(4, -1), noise["flow_x0"], noise["flow_times"]
    pred = reference.vector_field(agent.params["actor_slow"], batch["observations"], (1 - u) * x0 + u * x1, u)
    expected = (((pred - (x1 - x0)) ** 2).mean(-1) * batch["valid"][:, -1]).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


@pytest.mark.parametrize("clip_adj", [True, False])
def test_adjoint_loss_matches_numpy(clip_adj):
    agent = make(clip_adj=clip_adj)
    batch, noise = batch_for(3), noise_of(agent, 5)
    loss, info = agent.adjoint_loss(
        batch, agent.params, noise, agent.encode_batch(agent.params, batch["observations"])
    )

    obs, h = batch["observations"].astype(np.float64), 1 / FLOW_STEPS
    fast, base = agent.params["actor_fast"], agent.target_actor_slow

    def v(params, x, t):
        return reference.vector_field(params, obs, x, np.full((len(x), 1), t))

    x = noise["sde_x0"].astype(np.float64)
    xs = [x]
    for i in range(FLOW_STEPS):
        t = i * h
        if i < FLOW_STEPS - 1:
            sigma = np.sqrt(2 * (1 - t + h) / (t + h))
            x = x + h * (2 * v(fast, x, t) - x / (t + h)) + np.sqrt(h) * sigma * noise["sde_steps"][i]
        else:
            x = x + h * v(base, x, t)
        xs.append(x)

    def q(a):
        return reference.critic(agent.target_critic, obs, np.clip(a, -1, 1) if clip_adj else a).mean(0)

    adj = -2.0 * np_jacobian_t_times(lambda a: q(a)[:, None], xs[-1], np.ones((4, 1)))
    expected = 0.0
    for i in reversed(range(FLOW_STEPS)):
        t = i * h
        adj = adj + h * np_jacobian_t_times(lambda y, t=t: 2 * v(base, y, t + h) - y / (t + h), xs[i], adj)
        sigma = np.sqrt(2 * (1 - t + h) / (t + h))
        control = 2 * (v(fast, xs[i], t) - v(base, xs[i], t)) / sigma
        expected += ((control + sigma * adj) ** 2).sum(-1).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4)


def test_one_step_loss_distils_the_fine_flow_and_maximises_q():
    agent = make(fql_alpha=3.0)
    batch, noise = batch_for(3), noise_of(agent, 6)
    loss, info = agent.one_step_loss(
        batch, agent.params, noise, agent.encode_batch(agent.params, batch["observations"])
    )
    obs = batch["observations"]
    flow_actions = np_ode(agent.params["actor_fast"], obs, noise["distill"])
    actions = reference.vector_field(agent.params["one_step"], obs, noise["distill"])
    q = reference.critic(agent.params["critic"], obs, np.clip(actions, -1, 1)).mean()
    distill = ((actions - flow_actions) ** 2).mean()
    np.testing.assert_allclose(float(info["distill_loss"]), distill, rtol=1e-5)
    np.testing.assert_allclose(float(loss), 3.0 * distill - q, rtol=1e-5)


def test_edit_loss_is_sac_on_the_edit_with_an_automatic_temperature():
    agent = make(edit_scale=0.1)
    agent = agent.replace(params={**agent.params, "log_temperature": jnp.float32(np.log(0.3))})
    batch, noise = batch_for(3), noise_of(agent, 7)
    loss, info = agent.edit_loss(
        batch, agent.params, noise, agent.encode_batch(agent.params, batch["observations"])
    )
    obs = batch["observations"]
    flow_actions = np_ode(agent.params["actor_fast"], obs, noise["edit_x0"])
    means, log_stds = np_edit_actor(agent.params["edit"], np.concatenate([obs, flow_actions], -1))
    edit, log_probs = np_tanh_gaussian(means, log_stds, noise["edit"])
    q = reference.critic(agent.params["critic"], obs, np.clip(flow_actions + 0.1 * edit, -1, 1)).mean()
    entropy = -log_probs.mean()
    temperature_loss = 0.3 * (entropy - (-0.5 * 6))
    np.testing.assert_allclose(float(info["entropy"]), entropy, rtol=1e-4)
    np.testing.assert_allclose(float(info["temperature_loss"]), temperature_loss, rtol=1e-4)
    np.testing.assert_allclose(float(loss), -q + 0.3 * log_probs.mean() + temperature_loss, rtol=1e-4)
    # the temperature's gradient is the entropy gap alone; the edit policy's loss does not reach it
    grads = jax.grad(
        lambda p: agent.edit_loss(batch, p, noise, agent.encode_batch(p, batch["observations"]))[0]
    )(agent.params)
    np.testing.assert_allclose(float(grads["log_temperature"]), temperature_loss, rtol=1e-4)


@pytest.mark.parametrize(("overrides", "flow"), [({}, "actor_fast"), ({"inv_temp": 0.0}, "actor_slow")])
def test_qam_acts_with_the_fine_tuned_flow_and_with_the_bc_flow_at_inv_temp_zero(overrides, flow):
    agent = make(**overrides)
    obs = batch_for(3)["observations"]
    actions = agent.sample_actions(jnp.asarray(obs), jax.random.PRNGKey(8))
    noise = np.asarray(jax.random.normal(jax.random.split(jax.random.PRNGKey(8))[0], (4, 6)))
    assert actions.shape == (4, 3, 2)
    np.testing.assert_allclose(actions.reshape(4, -1), np_ode(agent.params[flow], obs, noise), atol=1e-5)


def test_update_polyak_averages_both_targets_from_the_parameters_before_the_step():
    agent = make(edit_scale=0.1)
    updated, info = jax.jit(lambda a, b: a.update(b))(agent, batch_for(3))
    for name, target in (("critic", "target_critic"), ("actor_slow", "target_actor_slow")):
        expected = jax.tree_util.tree_map(
            lambda p, t: 0.005 * p + 0.995 * t, agent.params[name], getattr(agent, target)
        )
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
            getattr(updated, target),
            expected,
        )
    assert np.isfinite(float(info["adjoint/adj_loss"])) and "edit/temperature" in info


def test_the_pessimistic_target_is_an_option_of_the_other_td_agents_and_refused_where_not_read():
    qs = np.asarray([[1.0, 2.0], [3.0, 6.0], [2.0, 1.0]], np.float32)
    np.testing.assert_allclose(td.bootstrap(jnp.asarray(qs), "min", 0.5), qs.mean(0) - 0.5 * qs.std(0))
    np.testing.assert_allclose(td.bootstrap(jnp.asarray(qs), "min", None), qs.min(0))
    fql = agents.make_agent(
        dict(algorithm="qc_fql", chunk_length=3, hidden_dims=[8, 8], num_qs=3, rho=0.5), 0, 2, 2
    )
    batch = batch_for(3)
    noise = fql.draw_noise(jax.random.PRNGKey(0), 4)
    next_obs = batch["next_observations"][:, -1]
    next_actions = np.clip(
        reference.vector_field(fql.params["actor_onestep_flow"], next_obs, noise["next_actions"]), -1, 1
    )
    next_qs = reference.critic(fql.target_critic, next_obs, next_actions)
    target = batch["rewards"][:, -1] + DISCOUNT**3 * batch["masks"][:, -1] * (
        next_qs.mean(0) - 0.5 * next_qs.std(0)
    )
    qs_now = reference.critic(fql.params["critic"], batch["observations"], batch["actions"].reshape(4, -1))
    expected = ((qs_now - target) ** 2 * batch["valid"][:, -1]).mean()
    np.testing.assert_allclose(float(fql.critic_loss(batch, fql.params, noise)[0]), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="agent.rho"):
        agents.make_config(dict(algorithm="iql", rho=0.5))


def test_an_inv_temp_by_seed_vector_member_is_the_qam_e_run_alone_through_a_resume(
    tiny_dataset_dir, tmp_path, monkeypatch
):
    """QAM-E, seed=[0,1] x inv_temp=[0.5,1]: killed mid-online and resumed, the member seed=1, inv_temp=1
    logs the rows and ends with the parameters of the single run."""

    def config(*overrides):
        return compose_config(
            "agent=qam_e",
            "env=pointmaze",
            f"env.dataset_dir={tiny_dataset_dir}",
            "env.download=false",
            "logger.mode=disabled",
            *TINY,
            "agent.num_qs=2",
            "agent.flow_steps=2",
            "agent.edit_scale=0.1",
            *overrides,
        )

    vector_dir = tmp_path / "vector"
    overrides = ("seed=[0,1]", "agent.inv_temp=[0.5,1.0]")
    train_interrupted(train_module.train, config(*overrides), vector_dir, monkeypatch, 3)
    vector = train_module.train(config(*overrides, "resume=true"), vector_dir)
    alone = train_module.train(config("seed=1", "agent.inv_temp=1.0"), tmp_path / "alone")
    index = next(i for i, m in enumerate(vector.members) if m.run_dir.name == "inv_temp=1.0,seed=1")
    assert_member_is_alone(vector, index, vector.members[index].run_dir, alone, tmp_path / "alone")
    other = rows(vector.members[index - 2].run_dir)  # inv_temp=0.5, seed=1: another run
    assert (
        other[0]["offline/adjoint/adj_loss"]
        != rows(vector.members[index].run_dir)[0]["offline/adjoint/adj_loss"]
    )
