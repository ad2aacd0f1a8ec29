"""launch/settings.py: the agent group with its per-domain defaults, the registry's errors and the checks of a
run's settings."""

import re

import pytest
from omegaconf import OmegaConf

import agents
from launch.engine import settings
from tests.helpers import CONFIGS, compose_config


@pytest.mark.parametrize(
    ("agent_name", "domain", "alpha"),
    [
        ("qc_fql", "cube-double", 300.0),
        ("qc_fql", "cube-triple", 100.0),
        ("fql", "puzzle-3x3", 100.0),
        ("fql", "cube-triple", 300.0),
        ("fql_n", "scene", 100.0),
        ("qc_fql", "pointmaze-medium", 100.0),  # no paper value: the reference default (acfql.py)
    ],
)
def test_alpha_defaults_follow_the_paper_per_domain(agent_name, domain, alpha):
    cfg = compose_config(f"agent={agent_name}")
    assert settings.agent_settings(cfg, domain)["alpha"] == alpha
    cfg.agent.alpha = 7.0
    assert settings.agent_settings(cfg, domain)["alpha"] == 7.0


def test_a_per_domain_table_without_a_default_serves_its_domains_and_names_them_elsewhere():
    cfg = compose_config("agent=fql")
    cfg.agent.alpha_by_domain = {"scene": 3.0, "cube-double": 30.0}
    assert settings.agent_settings(cfg, "scene")["alpha"] == 3.0
    message = r"agent.alpha_by_domain has no value for domain 'cube-single' and no 'default'; it has "
    listed = r".*'cube-double', 'scene'.*agent.alpha=<value>"
    with pytest.raises(ValueError, match=re.escape(message) + listed):
        settings.agent_settings(cfg, "cube-single")


def test_unknown_agent_setting_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown agent setting 'chunk_lenght'.*'chunk_length'"):
        agents.make_config({"algorithm": "qc_fql", "chunk_lenght": 3})
    valid = re.escape(str(sorted(agents.ALGORITHMS)))
    with pytest.raises(ValueError, match=f"unknown agent algorithm 'nope'; valid: {valid}"):
        agents.make_config({"algorithm": "nope"})


def test_the_registry_and_the_agent_configs_name_the_same_algorithms():
    """Each registered algorithm has its own configs/agent/<algorithm>.yaml, and every agent YAML names a
    registered algorithm."""
    yamls = sorted((CONFIGS / "agent").glob("*.yaml"))
    assert {path.stem for path in yamls} >= set(agents.ALGORITHMS)
    assert {compose_config(f"agent={path.stem}").agent.algorithm for path in yamls} == set(agents.ALGORITHMS)


def test_invalid_run_settings_fail_naming_the_setting(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    base = OmegaConf.create(
        {
            "agent": {"algorithm": "qc_fql", "chunk_length": 5},
            "env": {},
            "batch_size": 256,
            "offline_ratio": None,
            "eval_episodes": 50,
            "offline_steps": 1,
            "online_steps": 1,
            "start_training": 1,
            "random_action_steps": 0,
            "utd_ratio": 1,
            "eval_interval": 1,
            "log_interval": 1,
            "save_interval": 1,
            "updates_per_dispatch": 1,
            "buffer_size": 1,
            "eval": {"video_episodes": 0},
        }
    )
    settings.validate(base)
    for key, value, message in [
        ("agent.chunk_length", 0, "agent.chunk_length=0"),
        ("batch_size", 0, "batch_size=0"),
        ("offline_ratio", 1.5, "offline_ratio=1.5"),
        ("eval_episodes", 0, "eval_episodes=0"),
        ("eval.video_episodes", 2, r"eval.video_episodes=2: expected 0 unless MuJoCo can render headless"),
    ]:
        cfg = base.copy()
        OmegaConf.update(cfg, key, value)
        with pytest.raises(ValueError, match=f"invalid setting {message}"):
            settings.validate(cfg)


@pytest.mark.parametrize("agent", sorted(path.stem for path in (CONFIGS / "agent").glob("*.yaml")))
def test_the_debug_preset_gives_every_agent_its_configs_tiny_sizes(agent):
    cfg = compose_config(f"agent={agent}", "preset=debug")
    settings.validate(cfg)
    config = agents.make_config(settings.agent_settings(cfg, None))
    sizes = type(config).PRESETS["debug"]
    assert sizes and {key: getattr(config, key) for key in sizes} == sizes


def test_run_dir_names_turn_a_list_into_a_readable_path_component():
    """Lists in a run or sweep dir name lose the brackets Orbax cannot read checkpoints under."""
    assert settings.path_safe("agent.alpha=[10, 30],seed=[0,1]") == "agent.alpha=(10,30),seed=(0,1)"
    assert settings.path_safe(OmegaConf.create({"seed": [0, 1]}).seed) == "(0,1)"
    long = "x" * 200
    assert settings.path_safe(long) == settings.path_safe(long) and len(settings.path_safe(long)) == 120


@pytest.mark.parametrize("env", ["visual_cube", "visual_scene", "visual_puzzle_3x3", "visual_puzzle_4x4"])
def test_a_visual_env_turns_on_fqls_encoder_and_crop_unless_overridden(env):
    cfg = compose_config("agent=qc_fql", f"env={env}")
    assert (cfg.agent.encoder, cfg.agent.aug_prob, cfg.env.frame_stack) == ("impala_small", 0.5, 3)
    assert cfg.env.name.startswith("visual-") and cfg.env.name.endswith("-singletask-task1-v0")
    assert compose_config("agent=rlpd", f"env={env}", "agent.aug_prob=0").agent.aug_prob == 0
    assert compose_config("agent=qc_fql", "env=cube").agent.encoder is None
