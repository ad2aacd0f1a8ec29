"""Vectors of runs (launch/engine/vector.py): seeds, tasks and hyperparameters (agents/config.py) as axes;
each member is the run it would have been alone."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

import agents
from launch import plot
from launch import train as train_module
from launch.engine import vector
from tests.helpers import compose_config, train_interrupted, write_visual_dataset

TINY = [
    "agent.hidden_dims=[16,16]",
    "batch_size=16",
    "offline_steps=10",
    "online_steps=20",
    "start_training=5",
    "eval_interval=10",
    "eval_episodes=1",
    "log_interval=5",
    "save_interval=10",
    "updates_per_dispatch=5",
    "env.max_episode_steps=8",
    "buffer_size=2000",
]
AGENT_OVERRIDES = {
    "qc_fql": [],
    "qc": ["agent.num_samples=4", "agent.flow_steps=3"],
    "rlpd": ["random_action_steps=5", "agent.num_qs=2"],
}


def tiny_config(dataset_dir, agent, *overrides):
    return compose_config(
        f"agent={agent}",
        "env=pointmaze",
        f"env.dataset_dir={dataset_dir}",
        "env.download=false",
        "logger.mode=disabled",
        *TINY,
        *AGENT_OVERRIDES[agent],
        *overrides,
    )


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def untimed(logged: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "time"} for row in logged]


def assert_same_rows(vector_rows: list[dict], single_rows: list[dict]):
    assert len(vector_rows) == len(single_rows) > 0
    for got, expected in zip(vector_rows, single_rows, strict=True):
        assert got.keys() == expected.keys()
        assert (got["step"], got["phase"]) == (expected["step"], expected["phase"])
        for key in got.keys() - {"step", "phase", "time"}:
            if key.endswith("success"):
                assert got[key] == expected[key], key
            else:
                np.testing.assert_allclose(got[key], expected[key], rtol=2e-4, atol=1e-5, err_msg=key)


def test_hyperparameter_lists_are_axes_named_in_every_member_dir(tmp_path):
    cfg = compose_config("agent.alpha=[30,100,300]", "env.task=[2,4]", "seed=[0,1]")
    members = vector.vector_members(cfg, tmp_path)
    assert len(members) == 12
    assert [m.run_dir.name for m in members[:3]] == [
        "alpha=30,task=2,seed=0",
        "alpha=30,task=2,seed=1",
        "alpha=30,task=4,seed=0",
    ]
    member = members[9]
    assert member.run_dir == tmp_path / "alpha=300,task=2,seed=1"
    assert (member.cfg.agent.alpha, member.cfg.env.task, member.cfg.seed) == (300, 2, 1)
    assert vector.run_tags(member)[-3:] == ["task=2", "seed=1", "alpha=300"]
    utd = vector.vector_members(
        compose_config("agent=rlpd", "agent.lr=[1e-4,3e-4]", "utd_ratio=[1,2]"), tmp_path
    )
    assert [m.run_dir.name for m in utd] == [
        "lr=0.0001,utd_ratio=1",
        "lr=0.0001,utd_ratio=2",
        "lr=0.0003,utd_ratio=1",
        "lr=0.0003,utd_ratio=2",
    ]
    with pytest.raises(ValueError, match=r"invalid setting agent.alpha=\[1, 1\]: expected distinct numbers"):
        vector.vector_members(compose_config("agent.alpha=[1,1]"), tmp_path)


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
        vector.vector_members(compose_config(override), tmp_path)
    assert not vector.vector_members(compose_config("agent.hidden_dims=[8,16]"), tmp_path)[0].axes


def test_sweepable_settings_are_the_leaves_of_a_config():
    low, high = (
        agents.make_config({"algorithm": "qc_fql", "alpha": a, "hidden_dims": [8]}) for a in (3, 300)
    )
    assert jax.tree_util.tree_structure(low) == jax.tree_util.tree_structure(high)
    stacked = vector.stack([low, high])
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
    stacked = vector.stack(made)
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


def assert_swept_member_is_alone(dataset_dir, tmp_path, monkeypatch, agent, sweep, metric, *overrides):
    """A 2-member vector of `agent` sweeping `sweep` = (key, low, high) over agent.<key>, killed online
    mid-chunk and resumed: the high member logs the rows of the run agent.<key>=high alone and ends with its
    parameters; the low member's first `metric` differs (the sweep reached the agent; None: unchecked)."""
    key, low, high = sweep

    def config(*more):
        return compose_config(
            f"agent={agent}",
            "env=pointmaze",
            f"env.dataset_dir={dataset_dir}",
            "env.download=false",
            "logger.mode=disabled",
            *TINY,
            *overrides,
            *more,
        )

    vector_dir, swept = tmp_path / "vector", f"agent.{key}=[{low},{high}]"
    train_interrupted(train_module.train, config(swept), vector_dir, monkeypatch, 3)
    vector = train_module.train(config(swept, "resume=true"), vector_dir)
    alone = train_module.train(config(f"agent.{key}={high}"), tmp_path / "alone")
    index = next(i for i, m in enumerate(vector.members) if m.run_dir.name == f"{key}={high}")
    assert_member_is_alone(vector, index, vector.members[index].run_dir, alone, tmp_path / "alone")
    if metric is not None:
        first = [rows(vector.members[i].run_dir)[0][metric] for i in (1 - index, index)]
        assert first[0] != first[1]


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


def test_lists_make_one_member_per_task_and_seed(tmp_path):
    cfg = compose_config("seed=[0,1,2]", "env.task=[1,3]")
    members = vector.vector_members(cfg, tmp_path)
    assert [(m.task, m.seed) for m in members] == [(1, 0), (1, 1), (1, 2), (3, 0), (3, 1), (3, 2)]
    assert members[4].run_dir == tmp_path / "task=3,seed=1"
    assert members[4].cfg.env.name == "cube-double-play-singletask-task3-v0"
    assert vector.vector_members(compose_config("seed=4"), tmp_path)[0].run_dir == tmp_path
    with pytest.raises(ValueError, match=r"invalid setting seed=\[1, 1\]: expected distinct integers"):
        vector.vector_members(compose_config("seed=[1,1]"), tmp_path)


@pytest.mark.parametrize("agent", ["qc_fql", "qc", "rlpd"])
def test_each_run_of_a_vector_equals_the_run_alone(tiny_dataset_dir, tmp_path, agent):
    """2 tasks x 2 seeds in one process against the four single runs: offline and online losses, episode
    returns and evaluation successes, row by row."""
    vector = train_module.train(
        tiny_config(tiny_dataset_dir, agent, "seed=[0,1]", "env.task=[1,2]"), tmp_path / "vector"
    )
    assert vector.replay.offline.rewards.shape[0] == 2  # the dataset once, a reward row per task
    for index, member in enumerate(vector.members):
        alone = train_module.train(
            tiny_config(tiny_dataset_dir, agent, f"seed={member.seed}", f"env.task={member.task}"),
            tmp_path / f"alone{index}",
        )
        saved = OmegaConf.load(member.run_dir / ".hydra" / "config.yaml")
        assert (saved.seed, saved.env.task) == (member.seed, member.task)
        assert_same_rows(rows(member.run_dir), rows(tmp_path / f"alone{index}"))
        member_params = jax.tree_util.tree_map(lambda leaf, i=index: leaf[i], vector.agent.params)
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a, b[0], rtol=1e-3, atol=1e-5),
            member_params,
            alone.agent.params,
        )


def test_a_vector_resumes_exactly_after_an_interruption(tiny_dataset_dir, tmp_path, monkeypatch):
    """The kill-and-resume test on a vector of two runs, interrupted mid-episode online."""
    overrides = ("seed=[0,1]", "env.task=3")
    full = train_module.train(tiny_config(tiny_dataset_dir, "qc_fql", *overrides), tmp_path / "full")
    # killed at the 4th online dispatch: past the checkpoint at env step 10, with an episode open since step 8
    train_interrupted(
        train_module.train,
        tiny_config(tiny_dataset_dir, "qc_fql", *overrides),
        tmp_path / "resumed",
        monkeypatch,
        4,
    )
    resumed = train_module.train(
        tiny_config(tiny_dataset_dir, "qc_fql", *overrides, "resume=true"), tmp_path / "resumed"
    )
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.agent.params, full.agent.params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.replay.online, full.replay.online)
    for name in ("seed=0", "seed=1"):  # the same rows, none duplicated by the resume (task 3 is no axis)
        assert untimed(rows(tmp_path / "resumed" / name)) == untimed(rows(tmp_path / "full" / name))


# ---- pixels: a visual env's vector and resume, rendered in env workers (a few frames each) -----------------

VISUAL_TINY = [
    "agent=qc_fql",
    "env=visual_cube",
    "env.download=false",
    "env.max_episode_steps=4",
    "logger.mode=disabled",
    "agent.hidden_dims=[8]",
    "batch_size=4",
    "offline_steps=2",
    "online_steps=8",
    "start_training=1",
    "log_interval=3",
    "save_interval=3",
    "eval_interval=100",
    "eval_episodes=1",
    "updates_per_dispatch=2",
    "buffer_size=100",
]


@pytest.fixture(scope="module")
def visual_runs(tiny_dataset_dir, tmp_path_factory):
    """A 2-seed vector of tiny visual-cube runs (offline, then 8 online steps in 4-step episodes with 5-action
    chunks, each member's env rendering in its worker) and each seed's run alone; shared by the tests below
    because each run compiles the impala_small agent and renders."""
    root = tmp_path_factory.mktemp("visual")
    path = write_visual_dataset(tiny_dataset_dir / "cube-double-play-v0.npz", root / "visual.npz")

    def config(*overrides):
        return compose_config(*VISUAL_TINY, f"env.dataset_path={path}", *overrides)

    vector = train_module.train(config("seed=[0,1]"), root / "vector")
    alone = [train_module.train(config(f"seed={seed}"), root / f"alone{seed}") for seed in (0, 1)]
    return config, root, vector, alone


@pytest.mark.render
def test_each_run_of_a_visual_vector_equals_the_run_alone(visual_runs):
    """Frames stored once and stacked by index, rendered online in each member's worker: each seed of the
    vector logs the rows (offline and online losses, episode returns, evaluation success) and ends with the
    parameters of its run alone."""
    _, root, vector, alone = visual_runs
    assert {row["phase"] for row in rows(root / "vector" / "seed=0")} == {"offline", "online"}
    for index, member in enumerate(vector.members):
        assert_same_rows(rows(member.run_dir), rows(root / f"alone{index}"))
        jax.tree_util.tree_map(
            lambda a, b, i=index: np.testing.assert_allclose(a[i], b[0], rtol=1e-3, atol=1e-5),
            vector.agent.params,
            alone[index].agent.params,
        )


@pytest.mark.render
def test_a_visual_run_resumes_exactly_after_a_kill_mid_chunk(visual_runs, monkeypatch):
    """Killed online after its checkpoint at online step 3 (step 5 of the run, after 2 offline updates; two
    actions left in the open 5-action chunk, an episode open since step 0): the resumed run replays the
    episode's frames in its worker and ends with the uninterrupted run's parameters, online buffer and
    rows."""
    config, root, _, (full, _) = visual_runs
    run_dir = root / "resumed"
    train_interrupted(train_module.train, config("seed=0"), run_dir, monkeypatch, 2)
    saved = sorted(int(step.name) for step in (run_dir / "checkpoints").iterdir() if step.name.isdigit())
    assert saved[-1] == 5, saved
    resumed = train_module.train(config("seed=0", "resume=true"), run_dir)
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.agent.params, full.agent.params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.replay.online, full.replay.online)
    assert untimed(rows(run_dir)) == untimed(rows(root / "alone0"))
