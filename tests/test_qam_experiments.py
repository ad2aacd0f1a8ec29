"""configs/experiment/qam_*.yaml: each preset composes into QAM's published protocol (Li & Levine 2026,
ColinQiyangLi/qam experiments/reproduce.py) and sweeps the methods of QAM's results this codebase has, each
with its per-domain values (configs/qam_method/)."""

import functools
import json

import numpy as np
import pytest
from omegaconf import OmegaConf

import agents
from envs import domain_of, make_env
from envs.file_format import FILE_DTYPES
from launch import train as train_module
from launch.analysis import qam_results
from launch.engine.settings import agent_settings
from tests.helpers import CONFIGS, compose_config, env_cfg, write_pair
from tests.test_experiments import compose_hydra, paper_labels, swept
from tests.test_train import TINY

# preset -> (env group, domain, sparse, chunk_length, discount, rho): reproduce.py lines 280-303
PRESETS = {
    "qam_cube_double": ("cube", "cube-double", False, 5, 0.99, 0.5),
    "qam_cube_triple": ("cube_triple", "cube-triple", False, 5, 0.99, 0.5),
    "qam_cube_quadruple": ("cube_quadruple_100m", "cube-quadruple", False, 5, 0.99, 0.5),
    "qam_puzzle_3x3": ("puzzle_3x3", "puzzle-3x3", True, 5, 0.99, 0.5),
    "qam_puzzle_4x4": ("puzzle_4x4_100m", "puzzle-4x4", True, 5, 0.99, 0.5),
    "qam_scene": ("scene", "scene", True, 5, 0.99, 0.5),
    "qam_antmaze_large": ("antmaze_large", "antmaze-large", False, 1, 0.99, 0.5),
    "qam_antmaze_giant": ("antmaze_giant", "antmaze-giant", False, 1, 0.995, 0.5),
    "qam_humanoidmaze_medium": ("humanoidmaze_medium", "humanoidmaze-medium", False, 1, 0.995, 0.0),
    "qam_humanoidmaze_large": ("humanoidmaze_large", "humanoidmaze-large", False, 1, 0.995, 0.0),
}
QAM_AGENTS = ("qam", "qam_e", "qam_f")  # built in agents/qam.py by a branch of their own
# A few of the cited values (reproduce.py line): (preset, method) -> {field: value}
CITED = {
    ("qam_cube_triple", "fql"): {"alpha": 30.0},  # :109
    ("qam_cube_triple", "ifql"): {"expectile": 0.95},  # :31
    ("qam_cube_triple", "rlpd"): {"bc_alpha": 0.0},  # reproduce_rlpd.py:18
    ("qam_humanoidmaze_large", "rebrac"): {"alpha_actor": 0.01, "actor_noise": 0.1},  # :178
    ("qam_puzzle_4x4", "qam"): {"inv_temp": 30.0},  # :139
    ("qam_antmaze_giant", "qam_e"): {"inv_temp": 10.0, "edit_scale": 0.1},  # :151
    ("qam_scene", "qam_f"): {"inv_temp": 1.0, "fql_alpha": 300.0},  # :156
    ("qam_scene", "fawac"): {"inv_temp": 6.4},  # :117
    ("qam_cube_quadruple", "fbrac"): {"alpha": 1.0},  # :19
    ("qam_cube_double", "cgql"): {"mode": "simple", "inv_temp": 10.0, "guidance_coef": 0.01},  # :40
    ("qam_puzzle_4x4", "cgql_mse"): {"mode": "mse", "guidance_coef": 1.0, "noisy_coef": 0.001},  # :59
    ("qam_scene", "cgql_linex"): {"mode": "linex", "noisy_coef": 0.1},  # :65
    ("qam_scene", "dsrl"): {"noise_scale": 0.4},  # :78
    ("qam_cube_triple", "rebrac"): {"alpha_actor": 0.01, "actor_noise": 0.2, "delay_actor": False},  # :174
    ("qam_cube_triple", "bam"): {"inv_temp": 30.0},  # :187
    ("qam_humanoidmaze_medium", "fedit"): {"edit_scale": 0.5},  # :94
    ("qam_puzzle_4x4", "qsm"): {"actor_loss_type": "qsm", "inv_temp": 10.0, "alpha": 1.0},  # :202
    ("qam_cube_double", "dac"): {"actor_loss_type": "dac", "alpha": 3.0, "clip_sampler_before": True},  # :209
}


@functools.cache  # composes every agent config: once per session
def published_methods() -> frozenset[str]:
    """This codebase's agents (and the QAM agents, by their paper labels) that QAM's results hold."""
    held = {method for _, _, method in qam_results.load_seeds()}
    return frozenset(agent for label, agent in paper_labels().items() if label in held)


def test_every_method_of_qams_results_is_an_agent_here():
    """`plot.py --paper` can overlay each of QAM's published methods: every method their results hold is the
    paper label of an agent of this codebase."""
    assert {method for _, _, method in qam_results.load_seeds()} - set(paper_labels()) == set()


def test_every_qam_preset_is_listed():
    assert {path.stem for path in (CONFIGS / "experiment").glob("qam_*.yaml")} == {*PRESETS, "qam_protocol"}
    assert {path.stem for path in (CONFIGS / "qam_method").glob("*.yaml")} == published_methods()


@pytest.mark.parametrize("preset", PRESETS)
def test_qam_preset_is_the_published_protocol(preset):
    env_group, domain, sparse, chunk_length, discount, rho = PRESETS[preset]
    raw = OmegaConf.load(CONFIGS / "experiment" / f"{preset}.yaml")
    methods = swept(raw.hydra.sweeper.params)["qam_method"]
    assert set(methods) == published_methods()
    cfg = compose_hydra(f"+experiment={preset}")  # one job: QAM; the others below, and in the sweep
    assert cfg.hydra.runtime.choices.env == env_group and domain_of(cfg.env.name) == domain
    assert cfg.agent.name == "qam" and cfg.env.sparse is sparse
    assert (cfg.offline_steps, cfg.online_steps) == qam_results.BUDGET
    assert (cfg.eval_interval, cfg.eval_episodes, cfg.batch_size) == (50_000, 50, 256)
    assert list(cfg.seed) == list(range(12)) and list(cfg.env.task) == [1, 2, 3, 4, 5]
    assert (cfg.agent.num_qs, cfg.agent.chunk_length, cfg.agent.discount) == (10, chunk_length, discount)
    assert cfg.agent.rho == rho


@pytest.mark.parametrize(("preset", "method"), CITED)
def test_each_method_gets_its_domain_value_and_builds(preset, method):
    cfg = compose_hydra(f"+experiment={preset}", f"qam_method={method}", "env.task=1")
    settings = agent_settings(cfg, domain_of(cfg.env.name))
    assert {key: settings[key] for key in CITED[(preset, method)]} == CITED[(preset, method)]
    config = agents.make_config(settings)
    assert config.num_qs == 10 and config.chunk_length == PRESETS[preset][3]
    assert cfg.agent.rho == (None if method == "ifql" else PRESETS[preset][5])  # agents/ifql.py takes no rho


def random_dataset(env, episodes: int, steps: int) -> dict:
    """Random-action episodes in the real env, in OGBench's navigate layout (its data needs expert policies
    that OGBench does not ship, so a test cannot generate the real thing)."""
    rows = {key: [] for key in ("observations", "actions", "terminals", "qpos", "qvel")}
    rng = np.random.default_rng(0)
    for episode in range(episodes):
        observation, _ = env.reset(seed=episode)
        for step in range(steps):
            action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            rows["qpos"].append(env.unwrapped.data.qpos.copy())
            rows["qvel"].append(env.unwrapped.data.qvel.copy())
            rows["observations"].append(observation)
            rows["actions"].append(action)
            rows["terminals"].append(step == steps - 1)
            observation, *_ = env.step(action)
    return {key: np.asarray(values, FILE_DTYPES[key]) for key, values in rows.items()}


@pytest.mark.slow  # half a minute of CPU (compiles and evaluates): the default suite builds the envs instead
def test_a_locomotion_preset_trains_in_the_real_env_on_synthetic_data(tmp_path):
    path = tmp_path / "antmaze-large-navigate-v0.npz"
    env = make_env(env_cfg("antmaze_large"))
    write_pair(path, random_dataset(env, 3, 30), random_dataset(env, 1, 30))
    cfg = compose_config(
        "+experiment=qam_antmaze_large",
        "qam_method=fql",
        "seed=0",
        "env.task=1",
        f"env.dataset_path={path}",
        "logger.mode=disabled",
        *TINY,
    )
    train_module.train(cfg, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evaluated = [row["phase"] for row in rows if "eval/success" in row]
    assert evaluated == ["offline", "offline", "online", "online"]
