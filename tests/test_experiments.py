"""configs/experiment/paper_*.yaml: each preset composes into the paper's setup and sweeps its methods."""

import csv

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from envs import domain_of
from launch.analysis import paper, qam_results
from tests.helpers import CONFIGS, compose_config

# preset -> (env config group, the CSV's name for the domain, sparse reward)
OGBENCH_PRESETS = {
    "paper_cube_double": ("cube", "cube-double", False),
    "paper_cube_triple": ("cube_triple", "cube-triple", False),
    "paper_cube_quadruple": ("cube_quadruple_100m", "cube-quadruple", False),
    "paper_scene": ("scene", "scene", True),
    "paper_puzzle_3x3": ("puzzle_3x3", "puzzle-3x3", True),
}


def compose_hydra(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def swept(params) -> dict[str, list[str]]:
    """The values Hydra's basic sweeper launches for each of its params."""
    overrides = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
    return {override.key_or_group: list(override.sweep_string_iterator()) for override in overrides}


def paper_labels() -> dict[str, str]:
    """The paper's method name -> this codebase's agent, from each agent's `paper_label`."""
    agents = sorted(path.stem for path in (CONFIGS / "agent").glob("*.yaml"))
    labels = {agent: compose_config(f"agent={agent}").agent.paper_label for agent in agents}
    return {label: agent for agent, label in labels.items() if label is not None}


def paper_methods(benchmark: str, prefix: str) -> set[str]:
    """This codebase's agents that the CSV has a curve of for tasks starting with `prefix`."""
    names = paper_labels()
    with paper.CURVES_CSV.open() as file:
        return {
            names[row["method"]]
            for row in csv.DictReader(file)
            if row["benchmark"] == benchmark and row["task"].startswith(prefix) and row["method"] in names
        }


def test_each_paper_label_names_one_agent_and_a_published_method():
    agents = sorted(path.stem for path in (CONFIGS / "agent").glob("*.yaml"))
    labels = [compose_config(f"agent={agent}").agent.paper_label for agent in agents]
    named = [label for label in labels if label is not None]
    assert len(named) == len(set(named)), "two agents carry one paper_label (a variant inherited it?)"
    with paper.CURVES_CSV.open() as file:
        published = {row["method"] for row in csv.DictReader(file)}
    published |= {method for _, _, method in qam_results.load_seeds()}  # QAM, QAM-E, QAM-F
    assert set(named) <= published


def test_every_paper_preset_is_listed():
    assert {path.stem for path in (CONFIGS / "experiment").glob("paper_*.yaml")} == {
        *OGBENCH_PRESETS,
        "paper_robomimic",
    }


@pytest.mark.parametrize("preset", OGBENCH_PRESETS)
def test_ogbench_preset_is_the_paper_setup(preset):
    env_group, domain, sparse = OGBENCH_PRESETS[preset]
    raw = OmegaConf.load(CONFIGS / "experiment" / f"{preset}.yaml")
    assert list(raw.defaults) == [{"override /env": env_group}]
    assert raw.seed == [0, 1, 2, 3] and raw.env.task == [1, 2, 3, 4, 5] and raw.env.success_timing == "post"
    methods = swept(raw.hydra.sweeper.params)["agent"]
    assert sorted(methods) == sorted(paper_methods("ogbench", f"{domain}-play-task"))
    if not (CONFIGS / "env" / f"{env_group}.yaml").exists():
        pytest.skip(f"configs/env/{env_group}.yaml is not in this checkout yet")
    cfg = compose_hydra(f"+experiment={preset}")
    assert cfg.hydra.runtime.choices.env == env_group
    assert domain_of(cfg.env.name) == domain
    assert list(cfg.seed) == [0, 1, 2, 3] and list(cfg.env.task) == [1, 2, 3, 4, 5]
    assert cfg.env.sparse is sparse and cfg.env.success_timing == "post"
    assert (cfg.offline_steps, cfg.online_steps) == paper.PAPER_BUDGET
    assert swept(cfg.hydra.sweeper.params)["agent"] == methods
    for agent in methods:  # each job of the sweep composes
        assert compose_hydra(f"+experiment={preset}", f"agent={agent}").agent.name == agent


def test_robomimic_preset_sweeps_the_paper_methods_and_tasks():
    raw = OmegaConf.load(CONFIGS / "experiment" / "paper_robomimic.yaml")
    params = swept(raw.hydra.sweeper.params)
    assert sorted(params["agent"]) == sorted(paper_methods("robomimic", ""))
    assert params["env"] == ["lift", "can", "square"] and list(raw.seed) == [0, 1, 2, 3]
    if not all((CONFIGS / "env" / f"{env}.yaml").exists() for env in params["env"]):
        pytest.skip("configs/env/{lift,can,square}.yaml are not in this checkout yet")
    for env in params["env"]:
        cfg = compose_hydra("+experiment=paper_robomimic", f"env={env}")
        assert cfg.hydra.runtime.choices.env == env and list(cfg.seed) == [0, 1, 2, 3]
