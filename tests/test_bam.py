"""BAM against NumPy on the hand-built batch of test_qc_fql: the memoryless SDE rollout with given noise, the
critic's target, the BC flow's and the BAM loss; the gradient of the SDE objective, backpropagated through
every step, against central finite differences of the NumPy objective on a tiny flow; a vector of inv_temps
through a resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from agents import adjoint
from tests import reference
from tests.test_qc_fql import DISCOUNT, batch_for
from tests.test_vector import assert_swept_member_is_alone

FLOW_STEPS, INV_TEMP, RHO = 4, 2.0, 0.5


def make(**overrides):
    config = {
        "algorithm": "bam",
        "chunk_length": 3,
        "hidden_dims": [8, 8],
        "num_qs": 3,
        "flow_steps": FLOW_STEPS,
        "inv_temp": INV_TEMP,
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


def np_sde(fast, slow, obs, x0, steps):
    """The states x_0..x_K of the fine flow's memoryless SDE (K - 1 Euler-Maruyama steps, then the base flow's
    ODE step) and the control cost sum_i 2 ||v_fast - v_slow||^2 / sigma_i^2, averaged over the batch."""
    h, x, xs, cost = 1 / FLOW_STEPS, x0, [x0], 0.0
    for i in range(FLOW_STEPS):
        t = np.full((len(x), 1), i * h)
        if i < FLOW_STEPS - 1:
            v, v_base = reference.vector_field(fast, obs, x, t), reference.vector_field(slow, obs, x, t)
            sigma2 = 2 * (1 - t + h) / (t + h)
            cost = cost + ((v - v_base) ** 2).sum(-1) * 2 / sigma2[:, 0]
            x = x + h * (2 * v - x / (t + h)) + np.sqrt(h * sigma2) * steps[i]
        else:
            x = x + h * reference.vector_field(slow, obs, x, t)
        xs.append(x)
    return np.stack(xs), cost.mean()


def np_bam_loss(params, target_slow, batch, noise):
    """-inv_temp * mean_b (mean_k Q_k - rho std_k Q_k)(s, x_K), x_K unclipped, + the control cost."""
    obs = batch["observations"]
    xs, cost = np_sde(params["actor_fast"], target_slow, obs, noise["sde_x0"], noise["sde_steps"])
    qs = reference.critic(params["critic"], obs, xs[-1])
    q = (qs.mean(0) - RHO * qs.std(0)).mean()
    return -q * INV_TEMP + cost, cost, q


def test_the_sde_rollout_of_the_fine_flow_matches_numpy_with_its_velocities():
    agent, batch = make(), batch_for(3)
    noise, obs = noise_of(agent, 2), batch["observations"]
    fine = agent.velocity(agent.params["actor_fast"], jnp.asarray(obs))
    base = agent.velocity(agent.target_actor_slow, jnp.asarray(obs))
    args = (fine, base, noise["sde_x0"], noise["sde_steps"], FLOW_STEPS)
    xs, times, velocities = adjoint.memoryless_rollout(*args, with_velocities=True)
    expected, _ = np_sde(
        agent.params["actor_fast"], agent.target_actor_slow, obs, noise["sde_x0"], noise["sde_steps"]
    )
    np.testing.assert_allclose(xs, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(xs, adjoint.memoryless_rollout(*args)[0])  # QAM's call, unchanged
    for i in range(FLOW_STEPS - 1):
        np.testing.assert_allclose(
            velocities[i], reference.vector_field(agent.params["actor_fast"], obs, xs[i], times[i]), atol=1e-5
        )
    assert velocities.shape == (FLOW_STEPS - 1, 4, 6)


@pytest.mark.parametrize(("inv_temp", "flow"), [(INV_TEMP, "actor_fast"), (0.0, "actor_slow")])
def test_critic_loss_bootstraps_from_the_acting_flow_with_mean_minus_rho_std(inv_temp, flow):
    agent, batch = make(inv_temp=inv_temp), batch_for(3)
    noise = noise_of(agent, 3)
    encoded = agent.encode_batch(agent.params, batch["observations"])
    loss, _ = agent.critic_loss(batch, agent.params, noise, encoded)

    next_obs = batch["next_observations"][:, -1]
    next_actions = np_ode(agent.params[flow], next_obs, noise["next_actions"])
    next_qs = reference.critic(agent.target_critic, next_obs, next_actions)
    target = batch["rewards"][:, -1] + DISCOUNT**3 * batch["masks"][:, -1] * (
        next_qs.mean(0) - RHO * next_qs.std(0)
    )
    qs = reference.critic(agent.params["critic"], batch["observations"], batch["actions"].reshape(4, -1))
    np.testing.assert_allclose(float(loss), ((qs - target) ** 2 * batch["valid"][:, -1]).mean(), rtol=1e-5)


def test_bc_flow_and_bam_losses_match_numpy():
    agent, batch = make(), batch_for(3)
    noise = noise_of(agent, 4)
    _, info = agent.total_loss(agent.params, batch, noise)

    obs, x1 = batch["observations"], batch["actions"].reshape(4, -1)
    x0, u = noise["flow_x0"], noise["flow_times"]
    pred = reference.vector_field(agent.params["actor_slow"], obs, (1 - u) * x0 + u * x1, u)
    flow = (((pred - (x1 - x0)) ** 2).mean(-1) * batch["valid"][:, -1]).mean()
    np.testing.assert_allclose(float(info["actor/bc_flow_loss"]), flow, rtol=1e-5)

    loss, cost, q = np_bam_loss(agent.params, agent.target_actor_slow, batch, noise)
    np.testing.assert_allclose(float(info["bam/control_cost"]), cost, rtol=1e-5)
    np.testing.assert_allclose(float(info["bam/q"]), q, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(info["bam/bam_loss"]), loss, rtol=1e-5)
    assert cost > 0 and abs(q * INV_TEMP) > 0.01 * abs(loss)  # both terms weigh in the comparison


@pytest.mark.parametrize(("layer", "index"), [("Dense_0", (0, 3)), ("Dense_1", (2, 5)), ("Dense_2", (4, 1))])
def test_the_gradient_through_the_sde_matches_finite_differences(layer, index):
    """d(BAM loss)/d(one fine-flow weight) through the K steps (velocities, states and control cost), against
    float64 central differences; the critic and the BC flow get no gradient from it, and the fine flow none
    from the critic's and the BC flow's losses."""
    agent, batch = make(), batch_for(3)
    noise = noise_of(agent, 5)

    def loss_of(name):
        def loss(params):
            encoded = agent.encode_batch(params, batch["observations"])
            return getattr(agent, name)(batch, params, noise, encoded)[0]

        return jax.grad(loss)(agent.params)

    grads = loss_of("bam_loss")
    params64 = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), agent.params)
    target64 = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), agent.target_actor_slow)
    kernel = params64["actor_fast"]["params"]["MLP_0"][layer]["kernel"]
    eps, original = 1e-5, kernel[index]
    kernel[index] = original + eps
    up = np_bam_loss(params64, target64, batch, noise)[0]
    kernel[index] = original - eps
    down = np_bam_loss(params64, target64, batch, noise)[0]
    got = float(grads["actor_fast"]["params"]["MLP_0"][layer]["kernel"][index])
    np.testing.assert_allclose(got, (up - down) / (2 * eps), rtol=1e-3, atol=1e-6)
    assert abs(got) > 1e-4

    def zero(tree):
        return all(float(np.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(tree))

    assert zero(grads["critic"]) and zero(grads["actor_slow"])
    assert zero(loss_of("critic_loss")["actor_fast"]) and zero(loss_of("flow_loss")["actor_fast"])


@pytest.mark.parametrize(("overrides", "flow"), [({}, "actor_fast"), ({"inv_temp": 0.0}, "actor_slow")])
def test_bam_acts_with_the_fine_flow_ode_and_with_the_bc_flow_at_inv_temp_zero(overrides, flow):
    agent = make(**overrides)
    obs = batch_for(3)["observations"]
    actions = agent.sample_actions(jnp.asarray(obs), jax.random.PRNGKey(8))
    noise = np.asarray(jax.random.normal(jax.random.PRNGKey(8), (4, 6)))
    assert actions.shape == (4, 3, 2)
    np.testing.assert_allclose(actions.reshape(4, -1), np_ode(agent.params[flow], obs, noise), atol=1e-5)


def test_update_polyak_averages_both_targets_and_clips_the_gradient():
    agent = make()
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
    unclipped, _ = jax.jit(lambda a, b: a.update(b))(make(clip_grad=None), batch_for(3))
    assert float(info["grad/norm"]) > 1.0  # so the clipping acts
    gap = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()), updated.params, unclipped.params)
    assert max(jax.tree_util.tree_leaves(gap)) > 0


def test_an_inv_temp_vector_member_is_the_run_alone_through_a_resume(tiny_dataset_dir, tmp_path, monkeypatch):
    """inv_temp=[0,3]: the members act with different flows (the BC flow at 0); killed online and resumed, the
    inv_temp=3 member logs the rows and ends with the parameters of the single run."""
    assert_swept_member_is_alone(
        tiny_dataset_dir,
        tmp_path,
        monkeypatch,
        "bam",
        ("inv_temp", 0.0, 3.0),
        "offline/bam/bam_loss",
        "agent.num_qs=2",
        "agent.flow_steps=2",
    )
