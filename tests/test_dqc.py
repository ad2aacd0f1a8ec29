"""DQC's losses and best-of-N against NumPy on hand-built batches, in both settings (reach and return)."""

import jax
import numpy as np
import pytest

import agents
from agents import dqc
from envs import domain_of
from launch.engine import settings
from tests import reference
from tests.helpers import compose_config
from tests.test_qc_fql import batch_for, np_euler

H, H_A, STATE_DIM, GOAL_DIM, ACTION_DIM = 3, 2, 2, 2, 2


def make(value_type="reach", **overrides):
    """Tiny networks; a target action critic that differs from the online one."""
    goal_dim = GOAL_DIM if value_type == "reach" else 0
    config = dict(
        algorithm="dqc",
        chunk_length=H,
        policy_chunk_length=H_A,
        value_type=value_type,
        goal_dim=goal_dim,
        hidden_dims=[8, 8],
        num_samples=6,
        flow_steps=3,
    )
    config.update(overrides)
    agent = agents.make_agent(config, seed=0, obs_dim=STATE_DIM + goal_dim, action_dim=ACTION_DIM)
    target = jax.tree_util.tree_map(lambda x: x + 0.1, agent.target_critic)
    return agent.replace(target_critic=target)


def reach_batch():
    """A success at the start (n = 0), one inside the chunk (n = 1), two failures (n = H), one whose policy
    chunk leaves its trajectory (valid[h_a - 1] = 0)."""
    rng = np.random.default_rng(0)
    lengths = np.array([0, 1, H, H])
    success = (lengths < H).astype(np.float32)
    discount = 0.999
    return {
        "observations": rng.normal(size=(4, STATE_DIM + GOAL_DIM)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(4, H, ACTION_DIM)).astype(np.float32),
        "valid": np.array([[1, 1, 1], [1, 1, 1], [1, 0, 0], [1, 1, 1]], np.float32),
        "backup_lengths": lengths.astype(np.int32),
        "backup_rewards": (discount**lengths * success).astype(np.float32),
        "backup_masks": 1.0 - success,
        "backup_observations": rng.normal(size=(4, STATE_DIM + GOAL_DIM)).astype(np.float32),
    }


def batch_of(value_type):
    """Return setting: start 3 ends its trajectory at once (valid[h_a - 1] = 0), start 8 covers a success."""
    return reach_batch() if value_type == "reach" else batch_for(H, starts=(3, 8, 0, 10))


def np_target(agent, batch):
    """y of spec dqc.md loss 1: the reach target clipped to [0, 1], or the H-step chunk target."""
    params, discount = agent.params["value"], agent.config.discount
    if agent.config.value_type == "reach":
        next_v = reference.sigmoid(reference.value(params, batch["backup_observations"]))
        y = batch["backup_rewards"] + discount ** batch["backup_lengths"] * batch["backup_masks"] * next_v
        return np.clip(y, 0, 1)
    next_v = reference.value(params, batch["next_observations"][:, -1])
    return batch["rewards"][:, -1] + discount**H * batch["masks"][:, -1] * next_v


def flat(actions, steps):
    return actions[:, :steps].reshape(len(actions), -1)


@pytest.mark.parametrize("value_type", ["reach", "return"])
def test_chunk_critic_loss_matches_numpy(value_type):
    agent = make(value_type)
    batch = batch_of(value_type)
    loss, info = jax.jit(agent.chunk_critic_loss)(batch, agent.params)

    y = np_target(agent, batch)
    outputs = reference.critic(agent.params["chunk_critic"], batch["observations"], flat(batch["actions"], H))
    if value_type == "reach":
        expected = reference.bce(outputs, y).mean()
        np.testing.assert_allclose(float(info["q_mean"]), reference.sigmoid(outputs).mean(), rtol=1e-5)
        assert y[0] == 1.0 and 0 < y[2] < 1  # a success at the start; a failure bootstraps gamma^H V
    else:
        expected = ((outputs - y) ** 2 * batch["valid"][:, -1]).mean()
        assert batch["valid"][0, -1] == 0 and batch["masks"][1, -1] == 0
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("value_type", "method", "use_chunk_critic"),
    [
        ("reach", "expectile", True),
        ("reach", "quantile", True),
        ("reach", "quantile", False),
        ("return", "expectile", True),
        ("return", "quantile", False),
    ],
)
def test_distilled_action_critic_loss_matches_numpy(value_type, method, use_chunk_critic):
    agent = make(value_type, distill_method=method, use_chunk_critic=use_chunk_critic, kappa_d=0.8)
    batch = batch_of(value_type)
    loss, info = jax.jit(agent.action_critic_loss)(batch, agent.params)

    obs = batch["observations"]
    if use_chunk_critic:  # Q_H of the whole chunk, member by member
        target = reference.critic(agent.params["chunk_critic"], obs, flat(batch["actions"], H))
        target = reference.sigmoid(target) if value_type == "reach" else target
    else:  # the n-step target itself
        target = np_target(agent, batch)
    outputs = reference.critic(agent.params["action_critic"], obs, flat(batch["actions"], H_A))
    weights = batch["valid"][:, H_A - 1]
    expected = reference.asymmetric_loss(outputs, target, 0.8, method, value_type, weights)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    predictions = reference.sigmoid(outputs) if value_type == "reach" else outputs
    above = np.broadcast_to(target, outputs.shape) >= predictions
    assert above.any() and not above.all()  # both sides of the asymmetric weight are exercised
    assert weights.min() == 0  # a policy chunk outside its trajectory counts 0


@pytest.mark.parametrize(
    ("value_type", "method", "q_agg"),
    [
        ("reach", "quantile", "min"),
        ("reach", "expectile", "mean"),
        ("return", "quantile", "mean"),
        ("return", "expectile", "min"),
    ],
)
def test_implicit_value_backup_matches_numpy(value_type, method, q_agg):
    agent = make(value_type, implicit_backup_type=method, q_agg=q_agg, kappa_b=0.7)
    batch = batch_of(value_type)
    loss, info = jax.jit(agent.value_loss)(batch, agent.params)

    obs = batch["observations"]
    target_qs = reference.critic(agent.target_critic, obs, flat(batch["actions"], H_A))
    target_qs = reference.sigmoid(target_qs) if value_type == "reach" else target_qs
    q = target_qs.mean(0) if q_agg == "mean" else target_qs.min(0)
    outputs = reference.value(agent.params["value"], obs)
    expected = reference.asymmetric_loss(outputs, q, 0.7, method, value_type, batch["valid"][:, H_A - 1])
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    # the target copy, not the online action critic, is what V backs up
    online = reference.critic(agent.params["action_critic"], obs, flat(batch["actions"], H_A))
    online = reference.sigmoid(online) if value_type == "reach" else online
    online_q = online.mean(0) if q_agg == "mean" else online.min(0)
    wrong = reference.asymmetric_loss(outputs, online_q, 0.7, method, value_type, batch["valid"][:, H_A - 1])
    assert not np.isclose(float(loss), wrong, rtol=1e-4)


@pytest.mark.parametrize("value_type", ["reach", "return"])
def test_flow_behaviour_loss_matches_numpy(value_type):
    agent = make(value_type)
    batch = batch_of(value_type)
    noise = jax.tree_util.tree_map(np.asarray, agent.behavior.draw_noise(jax.random.PRNGKey(4), 4))
    loss, info = agent.behavior_loss(batch, agent.params, noise)

    states = batch["observations"][:, :STATE_DIM]  # the behaviour model never sees the goal
    x1, x0, u = flat(batch["actions"], H_A), noise["x0"], noise["times"]
    x_u = (1 - u) * x0 + u * x1
    predicted = reference.vector_field(agent.params["behavior"], states, x_u, u)
    per_row = ((predicted - (x1 - x0)) ** 2).mean(-1) * batch["valid"][:, H_A - 1]
    np.testing.assert_allclose(float(loss), per_row.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(info["bc_flow_loss"]), float(loss))


def np_best_of_n(agent, observations, noise):
    """Flow candidates from the state, scored by the online Q_A on state and goal: (batch, policy_dim)."""
    batch, num_samples, dim = noise.shape
    repeated = np.repeat(observations, num_samples, axis=0)
    states = repeated[:, : observations.shape[1] - agent.config.goal_dim]
    candidates = np_euler(agent.params["behavior"], states, noise.reshape(-1, dim), agent.config.flow_steps)
    qs = reference.critic(agent.params["action_critic"], repeated, candidates).reshape(-1, batch, num_samples)
    scores = qs.mean(0) if agent.config.q_agg == "mean" else qs.min(0)
    best = scores.argmax(1)
    return candidates.reshape(batch, num_samples, dim)[np.arange(batch), best], best


@pytest.mark.parametrize(("value_type", "q_agg"), [("reach", "min"), ("reach", "mean"), ("return", "min")])
def test_best_of_n_executes_the_policy_chunk_the_action_critic_scores_highest(value_type, q_agg):
    agent = make(value_type, q_agg=q_agg, num_samples=16)
    obs_dim = agent.config.goal_dim + STATE_DIM
    observations = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (6, obs_dim)))
    key = jax.random.PRNGKey(2)
    actions = np.asarray(jax.jit(lambda a, o, k: a.sample_actions(o, k))(agent, observations, key))

    noise = np.asarray(agent.behavior.sampling_noise(key, (6, 16)))
    expected, best = np_best_of_n(agent, observations, noise)
    assert actions.shape == (6, H_A, ACTION_DIM) and len(set(best)) > 1
    np.testing.assert_allclose(actions.reshape(6, -1), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("value_type", "use_chunk_critic", "chunk_length", "policy_chunk_length"),
    [
        ("reach", True, 3, 2),
        ("reach", False, 2, 2),
        ("reach", False, 3, 1),
        ("reach", False, 1, 1),
        ("return", True, 3, 2),
    ],
)
def test_updates_run_finite_and_polyak_average_the_target(
    value_type, use_chunk_critic, chunk_length, policy_chunk_length
):
    agent = make(
        value_type,
        use_chunk_critic=use_chunk_critic,
        chunk_length=chunk_length,
        policy_chunk_length=policy_chunk_length,
    )
    batch = batch_of(value_type)
    if chunk_length < H:
        batch = {**batch, **{key: batch[key][:, :chunk_length] for key in ("actions", "valid")}}
    update = jax.jit(lambda a, b: a.update(b))
    new, info = update(agent, batch)
    tau = agent.config.tau
    expected = jax.tree_util.tree_map(
        lambda p, t: tau * p + (1 - tau) * t, agent.params["action_critic"], agent.target_critic
    )
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        new.target_critic,
        expected,
    )
    for name in new.params:
        before, after = (jax.tree_util.tree_leaves(a.params[name])[0] for a in (agent, new))
        assert not np.allclose(before, after), name
    assert ("chunk_critic" in new.params) == use_chunk_critic
    assert any(key.startswith("chunk_critic/") for key in info) == use_chunk_critic
    for _ in range(4):
        new, info = update(new, batch)
    assert {"action_critic/critic_loss", "value/value_loss", "actor/bc_flow_loss", "grad/norm"} <= set(info)
    assert all(np.isfinite(float(v)) for v in info.values()), info


def test_settings_resolve_by_value_type_and_fail_naming_the_setting():
    reach = agents.make_config({"algorithm": "dqc", "goal_dim": 6})
    single = agents.make_config({"algorithm": "dqc"})
    assert (reach.value_type, reach.discount) == ("reach", 0.999)
    assert (single.value_type, single.discount) == ("return", 0.99)
    assert agents.make_config({"algorithm": "dqc", "goal_dim": 6, "discount": 0.99}).discount == 0.99
    assert single.policy_dim(3) == 15
    for setting, message in [
        ({"policy_chunk_length": 30}, r"policy_chunk_length=30: expected at most chunk_length=25"),
        ({"value_type": "reach"}, r"value_type='reach' with goal_dim=0"),
        ({"distill_method": "mse"}, r"distill_method='mse': expected one of \('expectile', 'quantile'\)"),
        ({"kappa_b": 1.0}, r"kappa_b=1.0: expected a number in \(0, 1\)"),
        ({"action_chunking": False}, r"action_chunking=False"),
    ]:
        with pytest.raises(ValueError, match=message):
            agents.make_config({"algorithm": "dqc", **setting})


@pytest.mark.parametrize(
    ("agent_name", "env", "expected"),
    [
        (
            "dqc",
            "cube_quadruple_oraclerep",
            dict(
                chunk_length=25,
                policy_chunk_length=5,
                use_chunk_critic=True,
                kappa_b=0.93,
                kappa_d=0.8,
                q_agg="min",
                value_type="reach",
                discount=0.999,
                goal_dim=12,
            ),
        ),
        (
            "dqc_qc",
            "cube_quadruple_oraclerep",
            dict(chunk_length=5, policy_chunk_length=5, use_chunk_critic=False, kappa_b=0.93),
        ),
        (
            "dqc_ns",
            "cube_quadruple_oraclerep",
            dict(chunk_length=25, policy_chunk_length=1, use_chunk_critic=False, kappa_b=0.5),
        ),
        (
            "dqc_os",
            "cube_quadruple_oraclerep",
            dict(chunk_length=1, policy_chunk_length=1, use_chunk_critic=False, kappa_b=0.7),
        ),
        ("dqc", "puzzle_4x5_oraclerep", dict(kappa_b=0.9, kappa_d=0.5, q_agg="mean", goal_dim=20)),
        ("dqc", "cube", dict(value_type="return", discount=0.99, goal_dim=0, chunk_length=25)),
    ],
)
def test_paper_variants_as_configs(agent_name, env, expected):
    cfg = compose_config(f"agent={agent_name}", f"env={env}")
    config = agents.make_config(settings.agent_settings(cfg, domain_of(cfg.env.name)))
    assert isinstance(config, dqc.Config)
    assert {key: getattr(config, key) for key in expected} == expected
    assert config.hidden_dims == (1024,) * 4 and config.num_samples == 32 and config.flow_steps == 10


TINY_RUN = [
    "agent.hidden_dims=[16,16]",
    "agent.num_samples=4",
    "agent.flow_steps=3",
    "batch_size=16",
    "offline_steps=10",
    "eval_interval=10",
    "eval_episodes=1",
    "log_interval=5",
    "save_interval=10",
    "updates_per_dispatch=5",
    "env.max_episode_steps=10",
    "logger.mode=disabled",
    "env.download=false",
]


def metric_rows(run_dir):
    import json

    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_dqc_trains_goal_conditioned_offline_through_the_train_loop(tiny_dataset_dir, tmp_path):
    """`agent=dqc env=cube_double_oraclerep`: goal-relabelled batches, reach values, two seeds as a vector."""
    from launch import train as train_module

    cfg = compose_config(
        "agent=dqc",
        "env=cube_double_oraclerep",
        f"env.dataset_dir={tiny_dataset_dir}",
        "online_steps=0",
        "seed=[0,1]",
        *TINY_RUN,
    )
    run = train_module.train(cfg, tmp_path)
    assert run.agent.config.value_type == "reach" and run.agent.config.goal_dim == 6
    for member in run.members:
        logged = metric_rows(member.run_dir)
        losses = [
            row
            for row in logged
            if "offline/chunk_critic/critic_loss" in row or "offline/value/value_loss" in row
        ]
        assert [row["step"] for row in losses] == [5, 10]
        assert [row["step"] for row in logged if "eval/success" in row] == [10]


def test_dqc_runs_the_offline_to_online_protocol_on_a_single_task(tiny_dataset_dir, tmp_path):
    """`agent=dqc env=pointmaze`: the return setting, offline then online with chunks of 5 of its 25."""
    from launch import train as train_module

    cfg = compose_config(
        "agent=dqc",
        "env=pointmaze",
        f"env.dataset_dir={tiny_dataset_dir}",
        "online_steps=20",
        "start_training=5",
        *TINY_RUN,
    )
    run = train_module.train(cfg, tmp_path)
    assert run.agent.config.value_type == "return"
    logged = metric_rows(tmp_path)
    assert [(row["phase"], row["step"]) for row in logged if "eval/success" in row] == [
        ("offline", 10),
        ("online", 20),
        ("online", 30),
    ]
    assert any(key.startswith("online/action_critic/") for row in logged for key in row)
