"""Hyperparameter lists as vector axes (launch/engine/vector.py, agents/config.py): each member is the run
alone."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

import agents
from launch import plot
from launch import train as train_module
from launch.engine import vector as run_module
from tests.helpers import compose_config, train_interrupted
from tests.test_run import assert_same_rows, rows, tiny_config


def test_hyperparameter_lists_are_axes_named_in_every_member_dir(tmp_path):
    cfg = compose_config("agent.alpha=[30,100,300]", "env.task=[2,4]", "seed=[0,1]")
    members = run_module.vector_members(cfg, tmp_path)
    assert len(members) == 12
    assert [m.run_dir.name for m in members[:3]] == [
        "alpha=30,task=2,seed=0",
        "alpha=30,task=2,seed=1",
        "alpha=30,task=4,seed=0",
    ]
    member = members[9]
    assert member.run_dir == tmp_path / "alpha=300,task=2,seed=1"
    assert (member.cfg.agent.alpha, member.cfg.env.task, member.cfg.seed) == (300, 2, 1)
    assert run_module.run_tags(member)[-3:] == ["task=2", "seed=1", "alpha=300"]
    utd = run_module.vector_members(
        compose_config("agent=rlpd", "agent.lr=[1e-4,3e-4]", "utd_ratio=[1,2]"), tmp_path
    )
    assert [m.run_dir.name for m in utd] == [
        "lr=0.0001,utd_ratio=1",
        "lr=0.0001,utd_ratio=2",
        "lr=0.0003,utd_ratio=1",
        "lr=0.0003,utd_ratio=2",
    ]
    with pytest.raises(ValueError, match=r"invalid setting agent.alpha=\[1, 1\]: expected distinct numbers"):
        run_module.vector_members(compose_config("agent.alpha=[1,1]"), tmp_path)


@pytest.mark.parametrize(
    "override",
    [
        "agent.chunk_length=[3,5]",
        "batch_size=[64,256]",
        "agent.hidden_dims=[[8],[16]]",
        "agent.num_qs=[2,10]",
    ],
)
def test_a_list_for_a_shape_changing_key_fails_naming_it_and_pointing_to_multirun(tmp_path, override):
    key = override.split("=")[0]
    with pytest.raises(
        ValueError, match=rf"^{key}=.* changes array shapes.* with -m \(a multirun of vectors\)"
    ):
        run_module.vector_members(compose_config(override), tmp_path)
    assert not run_module.vector_members(compose_config("agent.hidden_dims=[8,16]"), tmp_path)[0].axes


def test_sweepable_settings_are_the_leaves_of_a_config():
    low, high = (
        agents.make_config({"algorithm": "qc_fql", "alpha": a, "hidden_dims": [8]}) for a in (3, 300)
    )
    assert jax.tree_util.tree_structure(low) == jax.tree_util.tree_structure(high)
    stacked = run_module.stack([low, high])
    np.testing.assert_array_equal(stacked.alpha, [3.0, 300.0])
    np.testing.assert_allclose(
        jax.vmap(lambda c: c.alpha * c.discount)(stacked), [3 * 0.99, 300 * 0.99], rtol=1e-6
    )
    assert stacked.hidden_dims == (8,) and stacked.chunk_length == 5  # static, not stacked
    wider = stacked.replace_static(hidden_dims=(16,))
    assert wider.hidden_dims == (16,) and wider.alpha is stacked.alpha
    with pytest.raises(ValueError, match="'alpha' is not a static field of Config"):
        stacked.replace_static(alpha=1.0)


@pytest.mark.parametrize(
    ("algorithm", "key"),
    [
        ("iql", "alpha"),
        ("iql", "expectile"),
        ("ifql", "expectile"),
        ("rebrac", "alpha_actor"),
        ("rebrac", "alpha_critic"),
    ],
)
def test_the_baselines_hold_their_sweepable_settings_as_per_run_leaves(algorithm, key):
    """Agents of two values stack into one vector whose config carries each run's value."""
    made = [
        agents.make_agent({"algorithm": algorithm, "hidden_dims": [8], key: v}, 0, 3, 2) for v in (0.5, 0.7)
    ]
    stacked = run_module.stack(made)
    np.testing.assert_allclose(getattr(stacked.config, key), [0.5, 0.7])
    np.testing.assert_allclose(stacked.opt_state.hyperparams["learning_rate"], [3e-4, 3e-4])


def member_of(vector, index: int, tree):
    return jax.tree_util.tree_map(lambda leaf: leaf[index], tree)


def assert_member_is_alone(vector, index: int, member_dir, alone, alone_dir):
    assert_same_rows(rows(member_dir), rows(alone_dir))
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b[0], rtol=1e-3, atol=1e-5),
        member_of(vector, index, vector.agent.params),
        alone.agent.params,
    )


def test_an_alpha_vector_member_is_the_run_alone_through_a_resume(tiny_dataset_dir, tmp_path, monkeypatch):
    """QC-FQL, alpha=[3,300]: killed online and resumed, the alpha=300 member logs the rows of the single run
    agent.alpha=300 (offline and online losses, returns, successes); `plot.py --by agent.alpha` reads it."""
    vector_dir = tmp_path / "vector"
    train_interrupted(
        train_module.train,
        tiny_config(tiny_dataset_dir, "qc_fql", "agent.alpha=[3,300]", "seed=1"),
        vector_dir,
        monkeypatch,
        3,
    )
    vector = train_module.train(
        tiny_config(tiny_dataset_dir, "qc_fql", "agent.alpha=[3,300]", "seed=1", "resume=true"), vector_dir
    )
    alone = train_module.train(
        tiny_config(tiny_dataset_dir, "qc_fql", "agent.alpha=300", "seed=1"), tmp_path / "a"
    )
    member = vector.members[1]
    assert OmegaConf.load(member.run_dir / ".hydra" / "config.yaml").agent.alpha == 300
    assert_member_is_alone(vector, 1, member.run_dir, alone, tmp_path / "a")
    low = rows(vector.members[0].run_dir)  # alpha=3 is another run: its actor loss differs
    assert low[0]["offline/actor/actor_loss"] != rows(member.run_dir)[0]["offline/actor/actor_loss"]

    plot.main([str(vector_dir), "--by", "agent.alpha", "--out", str(tmp_path / "plot")])
    table = (tmp_path / "plot.md").read_text()
    assert "\n| 3 | 1 |" in table and "\n| 300 | 1 |" in table


def test_an_lr_utd_and_offline_ratio_vector_member_is_the_rlpd_run_alone(tiny_dataset_dir, tmp_path):
    """RLPD (online only), lr=[1e-3,3e-4] x utd_ratio=[1,2] x offline_ratio=[0.25,0.5]: the member
    lr=3e-4, utd_ratio=2, offline_ratio=0.25 is the single run alone."""
    overrides = ("agent.lr=[1e-3,3e-4]", "utd_ratio=[1,2]", "offline_ratio=[0.25,0.5]")
    vector = train_module.train(tiny_config(tiny_dataset_dir, "rlpd", *overrides), tmp_path / "vector")
    np.testing.assert_allclose(vector.agent.opt_state.hyperparams["learning_rate"], [1e-3] * 4 + [3e-4] * 4)
    np.testing.assert_allclose(vector.replay.offline_ratio, [0.25, 0.5] * 4)
    member = vector.members[6]
    assert member.run_dir.name == "lr=0.0003,utd_ratio=2,offline_ratio=0.25"
    alone = train_module.train(
        tiny_config(tiny_dataset_dir, "rlpd", "agent.lr=3e-4", "utd_ratio=2", "offline_ratio=0.25"),
        tmp_path / "alone",
    )
    assert_member_is_alone(vector, 6, member.run_dir, alone, tmp_path / "alone")
    assert jnp.asarray(vector.agent.opt_state.count)[6] == alone.agent.opt_state.count[0]


def test_evaluation_time_sweeps_log_beside_the_usual_success(tiny_dataset_dir, tmp_path):
    """QC with N=4: eval.execution_lengths=[1,5] and eval.num_samples=[2,4] evaluate the same agent on the
    same episodes; the whole chunk (5) and N=4 are the default evaluation, so they log its numbers exactly."""
    train_module.train(
        tiny_config(
            tiny_dataset_dir,
            "qc",
            "online_steps=0",
            "eval.execution_lengths=[1,5]",
            "eval.num_samples=[2,4]",
            "seed=[0]",  # a vector of one: its member dir holds the config that plot.py reads
        ),
        tmp_path / "run",
    )
    evals = [row for row in rows(tmp_path / "run" / "seed=0") if "eval/success" in row]
    assert len(evals) == 1
    (row,) = evals
    for key in ("eval/success", "eval/episode_return", "eval/episode_length"):
        assert row[f"{key}@execution_length=5"] == row[key] == row[f"{key}@num_samples=4"]
        assert f"{key}@execution_length=1" in row and f"{key}@num_samples=2" in row
    plot.main(
        [
            str(tmp_path / "run"),
            "--metric",
            "eval/episode_return@execution_length=1",
            "--out",
            str(tmp_path / "p"),
        ]
    )
    assert "eval/episode_return@execution_length=1 end of offline" in (tmp_path / "p.md").read_text()


def test_evaluation_sweeps_are_checked_at_start_up(tmp_path):
    with pytest.raises(ValueError, match=r"eval.num_samples=\[8\]: expected \[\] for agent.algorithm=qc_fql"):
        train_module.train(compose_config("eval.num_samples=[8]"), tmp_path)
    with pytest.raises(ValueError, match=r"eval.execution_lengths=\[0\]: expected a list of integers >= 1"):
        train_module.train(compose_config("eval.execution_lengths=[0]"), tmp_path)


def test_a_vector_of_one_and_an_unbatched_count_give_the_vmapped_updates():
    """The plain path (one run, a shared count) against the vmapped path of two copies of the same run; in a
    2-run alpha vector with per-run counts, the run given 0 updates comes back unchanged, and jax.lax.map
    over the runs gives what jax.vmap gives."""
    import buffers
    from launch.engine.fused import fused_updates
    from tests.test_buffers import hand_built

    settings = {"algorithm": "qc_fql", "hidden_dims": [8], "chunk_length": 2}
    replay = buffers.make_replay([hand_built()], [0, 0], [0, 0], 100, 10, None)
    lone = jax.tree_util.tree_map(lambda leaf: leaf[:1], replay.run_part())
    one = run_module.stack([agents.make_agent(settings, 0, 2, 2)])
    twice = run_module.stack([agents.make_agent(settings, 0, 2, 2)] * 2)
    keys = jnp.stack([jax.random.PRNGKey(1)] * 2)
    kw = dict(batch_size=4, online=False)
    plain = fused_updates(one, keys[:1], replay.with_run_part(lone), jnp.int32(3), **kw)
    batched = fused_updates(twice, keys, replay, jnp.int32([3, 3]), **kw)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a[0], b[1], rtol=1e-5, atol=1e-6),
        (plain[0].params, plain[2]),
        (batched[0].params, batched[2]),
    )

    def alphas():
        return run_module.stack([agents.make_agent({**settings, "alpha": a}, 0, 2, 2) for a in (3.0, 300.0)])

    before = jax.tree_util.tree_map(np.asarray, alphas().params)
    after = fused_updates(alphas(), keys, replay, jnp.int32([0, 3]), **kw)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a[0], b[0]), after[0].params, before)
    looped = fused_updates(alphas(), keys, replay, jnp.int32([0, 3]), **kw, run_map="map")  # jax.lax.map
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        (looped[0].params, looped[2]),
        (after[0].params, after[2]),
    )
