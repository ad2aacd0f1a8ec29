"""ReBRAC's smoothed target with its next-action penalty, its actor loss and its every-second-step schedule
against NumPy on a hand-built batch; QAM's chunked form (no penalty, mean - rho std, the actor on every step)
likewise, and a vector member of it is its single run through a resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
from agents import rebrac, step
from launch.engine import settings
from tests import reference
from tests.helpers import compose_config
from tests.test_buffers import hand_built
from tests.test_iql import np_actor
from tests.test_qc_fql import DISCOUNT, batch_for
from tests.test_vector import assert_swept_member_is_alone

# start 3 is the last step of the first episode (its next action is another episode's), start 10 the success
STARTS = (0, 3, 5, 10)


def make(**overrides):
    config = dict(
        algorithm="rebrac", hidden_dims=[8, 8], discount=DISCOUNT, alpha_critic=0.5, alpha_actor=0.3
    )
    config.update(overrides)
    agent = agents.make_agent(config, seed=0, obs_dim=2, action_dim=2)
    # targets that differ from the online networks, so the test sees which is used where
    shift = jax.tree_util.tree_map(
        lambda x: x + 0.1, {"critic": agent.target_critic, "actor": agent.target_actor}
    )
    return agent.replace(target_critic=shift["critic"], target_actor=shift["actor"])


def np_policy(actor_params, observations):
    return np.tanh(np_actor(actor_params, observations))


def test_the_sampler_gives_the_datasets_next_action():
    agent = make()
    assert agent.config.sample_length == 2
    assert (
        agents.make_config({"algorithm": "qc_fql", "chunk_length": 5}).sample_length == 5
    )  # others unchanged
    data = hand_built()
    chunk, next_actions, next_valid = rebrac.split_next_actions(batch_for(2, STARTS))
    np.testing.assert_array_equal(next_actions, data["actions"][np.asarray(STARTS) + 1])
    np.testing.assert_array_equal(next_valid, [1, 0, 1, 1])
    np.testing.assert_array_equal(chunk["actions"], batch_for(1, STARTS)["actions"])
    for key, value in batch_for(1, STARTS).items():
        np.testing.assert_array_equal(chunk[key], value, err_msg=key)


def test_critic_loss_matches_numpy():
    agent = make()
    batch = batch_for(2, STARTS)
    noise = 3.0 * np.asarray(jax.random.normal(jax.random.PRNGKey(3), (4, 2)))  # some beyond the clip
    loss, info = agent.critic_loss(batch, agent.params, noise)

    data = hand_built()
    next_obs = batch["next_observations"][:, 0]
    smoothing = np.clip(0.2 * noise, -0.5, 0.5)
    next_actions = np.clip(np_policy(agent.target_actor, next_obs) + smoothing, -1, 1)
    penalty = ((next_actions - data["actions"][np.asarray(STARTS) + 1]) ** 2).sum(-1) * [1, 0, 1, 1]
    next_q = reference.critic(agent.target_critic, next_obs, next_actions).min(0) - 0.5 * penalty
    target = batch["rewards"][:, 0] + DISCOUNT * batch["masks"][:, 0] * next_q
    qs = reference.critic(agent.params["critic"], batch["observations"], batch["actions"][:, 0])
    np.testing.assert_allclose(float(loss), ((qs - target) ** 2).mean(), rtol=1e-5)
    np.testing.assert_allclose(float(info["next_action_mse"]), penalty.mean(), rtol=1e-5)
    assert np.any(np.abs(0.2 * noise) > 0.5) and batch["masks"][3, 0] == 0 and penalty[1] == 0


def test_n_step_target_bootstraps_after_the_chunk():
    agent = make(chunk_length=3, action_chunking=False)
    batch = batch_for(4, (0, 2, 5, 6))
    noise = np.asarray(jax.random.normal(jax.random.PRNGKey(4), (4, 2)))
    loss, _ = agent.critic_loss(batch, agent.params, noise)

    next_obs = batch["next_observations"][:, 2]
    next_actions = np.clip(np_policy(agent.target_actor, next_obs) + np.clip(0.2 * noise, -0.5, 0.5), -1, 1)
    penalty = ((next_actions - batch["actions"][:, 3]) ** 2).sum(-1) * batch["valid"][:, 3]
    next_q = reference.critic(agent.target_critic, next_obs, next_actions).min(0) - 0.5 * penalty
    target = batch["rewards"][:, 2] + DISCOUNT**3 * batch["masks"][:, 2] * next_q
    qs = reference.critic(agent.params["critic"], batch["observations"], batch["actions"][:, 0])
    np.testing.assert_allclose(float(loss), ((qs - target) ** 2 * batch["valid"][:, 2]).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="action_chunking=true with chunk_length=3: ReBRAC's critic penalty"):
        agents.make_config({"algorithm": "rebrac", "chunk_length": 3, "alpha_critic": 0.5})


def test_actor_loss_matches_numpy():
    agent = make()
    batch = batch_for(2, STARTS)
    loss, info = agent.actor_loss(batch, agent.params)

    obs = batch["observations"]
    actions = np_policy(agent.params["actor"], obs)
    q = reference.critic(agent.params["critic"], obs, actions).min(0)
    mse = ((actions - batch["actions"][:, 0]) ** 2).sum(-1)
    expected = -(q / np.abs(q).mean()).mean() + 0.3 * mse.mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(info["bc_loss"]), 0.3 * mse.mean(), rtol=1e-5)


def test_actor_and_targets_update_on_every_second_step_only():
    agent = make()
    batch = {key: jnp.asarray(value) for key, value in batch_for(2, STARTS).items()}
    update = jax.jit(lambda a, b: a.update(b))
    tau = agent.config.tau
    delayed = [bool(step.is_delayed_step(i, 2)) for i in range(4)]
    assert delayed == [False, True, False, True]  # FQL: i % actor_freq == 0 for i = 1, 2, ...
    for index, is_delayed in enumerate(delayed):
        noise = agent.draw_noise(jax.random.split(agent.rng)[1], 4)
        actor_grads = jax.grad(agent.total_loss, has_aux=True)(agent.params, batch, noise)[0]["actor"]
        actor_grad_norm = sum(float(jnp.abs(g).sum()) for g in jax.tree_util.tree_leaves(actor_grads))
        assert (actor_grad_norm > 0) == is_delayed, index
        new, _ = update(agent, batch)
        for name in ("critic", "actor"):
            old_target, new_target = getattr(agent, f"target_{name}"), getattr(new, f"target_{name}")
            averaged = jax.tree_util.tree_map(
                lambda p, t: tau * p + (1 - tau) * t,
                agent.params[name],
                old_target,  # params before the step
            )
            jax.tree_util.tree_map(
                lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                new_target,
                averaged if is_delayed else old_target,
            )
        actor_moved = not np.allclose(
            *(jax.tree_util.tree_leaves(a.params["actor"])[0] for a in (agent, new))
        )
        # the first update has no gradient and no Adam momentum for the actor; later off steps coast on it
        assert actor_moved == (index > 0), index
        assert int(new.step) == index + 1
        agent = new


def test_exploration_is_the_mode_plus_clipped_noise_and_evaluation_the_mode():
    agent = make()
    observations = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (5, 2)))
    key = jax.random.PRNGKey(2)
    modes = np_policy(agent.params["actor"], observations)
    noise = np.asarray(jax.random.normal(key, (5, 2)))
    sampled = np.asarray(agent.sample_actions(jnp.asarray(observations), key))
    np.testing.assert_allclose(
        sampled[:, 0], np.clip(modes + np.clip(0.2 * noise, -0.5, 0.5), -1, 1), atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(agent.eval_actions(jnp.asarray(observations), key))[:, 0], modes, atol=1e-6
    )


def test_paper_coefficient_sets_the_actor_penalty():
    config = agents.make_config(settings.agent_settings(compose_config("agent=rebrac"), "cube-double"))
    assert (config.alpha_actor, config.alpha_critic, config.actor_freq) == (0.1, 0.0, 2)
    assert (config.actor_noise, config.actor_noise_clip, config.chunk_length) == (0.2, 0.5, 1)


# QAM's chunked ReBRAC (ColinQiyangLi/qam agents/rebrac.py): chunks of 3, 3 critics, rho 0.5, no penalty
CHUNKED = dict(chunk_length=3, num_qs=3, rho=0.5, alpha_critic=0.0, delay_actor=False)
# start 2 crosses the end of the first episode (valid[h-1] = 0), start 8 covers the success at index 10
CHUNK_STARTS = (2, 8, 0, 10)


def np_pessimistic(qs):
    return qs.mean(0) - 0.5 * qs.std(0)


def test_a_chunked_rebrac_needs_no_critic_penalty_and_samples_the_chunk_alone():
    config = agents.make_config({"algorithm": "rebrac", "chunk_length": 5})
    assert config.sample_length == 5 and not config.reads_next_action
    assert (
        agents.make_config({"algorithm": "rebrac", "chunk_length": 5, "action_chunking": False}).sample_length
        == 6
    )
    with pytest.raises(ValueError, match=r"penalty \(alpha_critic=0.1\).*expected alpha_critic=0"):
        agents.make_config({"algorithm": "rebrac", "chunk_length": 5, "alpha_critic": 0.1})
    agent = make(**CHUNKED)
    assert agent.draw_noise(jax.random.PRNGKey(0), 4).shape == (4, 6)
    batch = batch_for(3, CHUNK_STARTS)
    assert agent.split(batch)[0] is batch


def test_chunked_critic_target_matches_numpy():
    agent = make(**CHUNKED)
    batch = batch_for(3, CHUNK_STARTS)
    noise = 3.0 * np.asarray(jax.random.normal(jax.random.PRNGKey(3), (4, 6)))  # some beyond the clip
    loss, info = agent.critic_loss(batch, agent.params, noise)

    next_obs = batch["next_observations"][:, -1]
    next_chunks = np.clip(np_policy(agent.target_actor, next_obs) + np.clip(0.2 * noise, -0.5, 0.5), -1, 1)
    next_q = np_pessimistic(reference.critic(agent.target_critic, next_obs, next_chunks))
    target = batch["rewards"][:, -1] + DISCOUNT**3 * batch["masks"][:, -1] * next_q
    qs = reference.critic(agent.params["critic"], batch["observations"], batch["actions"].reshape(4, -1))
    np.testing.assert_allclose(float(loss), ((qs - target) ** 2 * batch["valid"][:, -1]).mean(), rtol=1e-5)
    assert "next_action_mse" not in info and np.any(np.abs(0.2 * noise) > 0.5)
    assert batch["valid"][0, -1] == 0 and batch["masks"][1, -1] == 0  # both edges are in the batch


def test_chunked_actor_loss_matches_numpy():
    agent = make(**CHUNKED)
    batch = batch_for(3, CHUNK_STARTS)
    loss, info = agent.actor_loss(batch, agent.params)

    obs = batch["observations"]
    chunks = np_policy(agent.params["actor"], obs)
    q = np_pessimistic(reference.critic(agent.params["critic"], obs, chunks))
    mse = ((chunks - batch["actions"].reshape(4, -1)) ** 2).sum(-1) * batch["valid"][:, -1]
    expected = -(q / np.abs(q).mean()).mean() + 0.3 * mse.mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(info["bc_loss"]), 0.3 * mse.mean(), rtol=1e-5)
    assert mse[0] == 0 and chunks.shape == (4, 6)


def test_chunked_exploration_noises_every_coordinate_of_the_chunk():
    agent = make(**CHUNKED)
    observations = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (5, 2)))
    key = jax.random.PRNGKey(2)
    modes = np_policy(agent.params["actor"], observations)
    noise = np.asarray(jax.random.normal(key, (5, 6)))
    sampled = np.asarray(agent.sample_actions(jnp.asarray(observations), key))
    expected = np.clip(modes + np.clip(0.2 * noise, -0.5, 0.5), -1, 1).reshape(5, 3, 2)
    np.testing.assert_allclose(sampled, expected, atol=1e-6)
    evaluated = np.asarray(agent.eval_actions(jnp.asarray(observations), key))
    np.testing.assert_allclose(evaluated, modes.reshape(5, 3, 2), atol=1e-6)


def test_without_delay_actor_the_actor_steps_on_every_update_and_the_targets_on_every_second():
    agent = make(**CHUNKED)
    batch = {key: jnp.asarray(value) for key, value in batch_for(3, CHUNK_STARTS).items()}
    update = jax.jit(lambda a, b: a.update(b))
    for index, is_delayed in enumerate([False, True, False, True]):
        noise = agent.draw_noise(jax.random.split(agent.rng)[1], 4)
        actor_grads = jax.grad(agent.total_loss, has_aux=True)(agent.params, batch, noise)[0]["actor"]
        assert sum(float(jnp.abs(g).sum()) for g in jax.tree_util.tree_leaves(actor_grads)) > 0, index
        new, _ = update(agent, batch)
        moved = jax.tree_util.tree_map(
            lambda a, b: not np.allclose(a, b),
            (agent.target_critic, agent.target_actor),
            (new.target_critic, new.target_actor),
        )
        assert (
            all(jax.tree_util.tree_leaves(moved)) == is_delayed
            and any(jax.tree_util.tree_leaves(moved)) == is_delayed
        )
        agent = new


def test_an_alpha_actor_vector_member_of_chunked_rebrac_is_the_run_alone_through_a_resume(
    tiny_dataset_dir, tmp_path, monkeypatch
):
    assert_swept_member_is_alone(
        tiny_dataset_dir,
        tmp_path,
        monkeypatch,
        "rebrac",
        ("alpha_actor", 0.1, 1.0),
        "offline/actor/bc_loss",
        "agent.chunk_length=3",
        "agent.num_qs=2",
        "agent.rho=0.5",
        "agent.delay_actor=false",
    )
