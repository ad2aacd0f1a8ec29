"""docs/defaults.md against the configs: every row's value is what `agent=<agent> env=<an env of the domain>`
resolves to, so the table of sources and the code cannot drift apart."""

import functools
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

import agents
import envs
from launch.engine import settings
from tests.helpers import CONFIGS, compose_config

TABLE = Path(__file__).resolve().parents[1] / "docs" / "defaults.md"
HEADER = "| agent | domain | setting | value | source |"
# The env groups of each domain (robomimic: each of its tasks); `all` stands for every one of them.
DOMAIN_ENVS = {
    "cube-double": ["cube"],
    "cube-triple": ["cube_triple"],
    "cube-quadruple": ["cube_quadruple"],
    "scene": ["scene"],
    "puzzle-3x3": ["puzzle_3x3"],
    "robomimic": ["lift", "can", "square"],
    "visual-cube-double": ["visual_cube"],
    "visual-scene": ["visual_scene"],
    "visual-puzzle-3x3": ["visual_puzzle_3x3"],
    "visual-puzzle-4x4": ["visual_puzzle_4x4"],
}
# What FQL's pixel settings (configs/pixels/fql.yaml) set on a visual env: the `all` rows of these settings
# are the state envs' defaults, checked there only.
PIXEL_SETTINGS = set(OmegaConf.load(CONFIGS / "pixels" / "fql.yaml").agent)
# FQL's alpha per visual domain, read off seohongpark/fql@719d044 README.md:176-184 (its visual commands).
FQL_VISUAL_ALPHA = {
    "visual-cube-single": 300,
    "visual-cube-double": 100,
    "visual-scene": 100,
    "visual-puzzle-3x3": 300,
    "visual-puzzle-4x4": 300,
}


def table_rows() -> list[dict]:
    """The rows of the one table in docs/defaults.md, each {agent, domain, setting, value, source}."""
    lines = TABLE.read_text().splitlines()
    start = lines.index(HEADER)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == 5 and all(cells), f"{TABLE}: expected 5 non-empty cells, found {line!r}"
        rows.append(dict(zip(("agent", "domain", "setting", "value", "source"), cells, strict=True)))
    return rows


@functools.cache
def resolved(agent: str, env: str) -> tuple[dict, dict]:
    """The run config and the agent's settings with its per-domain defaults filled in."""
    cfg = compose_config(f"agent={agent}", f"env={env}")
    return dict(cfg), settings.agent_settings(cfg, envs.domain_of(cfg.env.name))


ROWS = table_rows()


def test_the_table_covers_every_agent_and_only_known_domains():
    agents = {path.stem for path in (CONFIGS / "agent").glob("*.yaml")}
    assert {row["agent"] for row in ROWS} == agents
    assert {row["domain"] for row in ROWS} <= {*DOMAIN_ENVS, "all"}
    keys = [(row["agent"], row["domain"], row["setting"]) for row in ROWS]
    assert len(keys) == len(set(keys)), "a setting listed twice for one agent and domain"


@pytest.mark.parametrize("env", [env for group in DOMAIN_ENVS.values() for env in group])
def test_each_env_is_of_its_domain(env):
    domain = next(domain for domain, group in DOMAIN_ENVS.items() if env in group)
    name = compose_config(f"env={env}").env.name
    assert envs.domain_of(name) == (env if domain == "robomimic" else domain)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: f"{row['agent']}-{row['domain']}-{row['setting']}")
def test_the_resolved_default_is_the_tables(row):
    expected = yaml.safe_load(row["value"])
    domain_envs = [e for group in DOMAIN_ENVS.values() for e in group] if row["domain"] == "all" else None
    for env in domain_envs or DOMAIN_ENVS[row["domain"]]:
        if row["domain"] == "all" and env.startswith("visual_") and row["setting"] in PIXEL_SETTINGS:
            continue
        run_cfg, agent_settings = resolved(row["agent"], env)
        if row["setting"] in agent_settings:
            value = agent_settings[row["setting"]]
        else:
            assert row["setting"] in run_cfg, f"{row['setting']} is neither an agent nor a run setting"
            value = run_cfg[row["setting"]]
        assert value == expected, f"agent={row['agent']} env={env}: {row['setting']}={value!r}"


@pytest.mark.parametrize("domain", sorted(FQL_VISUAL_ALPHA))
def test_fql_on_each_visual_domain_gets_fqls_alpha_on_its_dense_reward(domain):
    """FQL's visual α was tuned on OGBench's dense reward (its main.py passes rewards through), so a visual
    env's default keeps that reward; visual-cube-single has no env group and is reached by name."""
    env = "visual_cube" if domain.startswith("visual-cube") else domain.replace("-", "_")
    cfg = compose_config("agent=fql", f"env={env}", f"env.name={domain}-play-singletask-task1-v0")
    assert envs.domain_of(cfg.env.name) == domain
    assert settings.agent_settings(cfg, domain)["alpha"] == FQL_VISUAL_ALPHA[domain]
    assert cfg.env.sparse is False


@pytest.mark.parametrize("agent", ["dqc", "dqc_qc", "dqc_ns", "dqc_os"])
def test_a_dqc_batch_size_set_by_the_user_wins_over_the_agents_4096(agent):
    assert compose_config(f"agent={agent}").batch_size == 4096
    assert compose_config(f"agent={agent}", "batch_size=512").batch_size == 512
    assert compose_config(f"agent={agent}", "preset=debug").batch_size == 32
    assert compose_config("agent=qc_fql").batch_size == 256


# ---- one source: each agent's Config holds its defaults, the YAML only what differs ------------------------


def agent_part(name: str) -> tuple[dict, list]:
    """configs/agent/<name>.yaml's agent keys (unresolved) and its defaults list."""
    raw = OmegaConf.to_container(OmegaConf.load(CONFIGS / "agent" / f"{name}.yaml"))
    values = raw.get("agent", raw)
    return {key: value for key, value in values.items() if key != "defaults"}, raw.get("defaults", [])


@pytest.mark.parametrize("algorithm", sorted(agents.ALGORITHMS))
def test_an_algorithms_yaml_builds_on_its_config_and_repeats_none_of_its_defaults(algorithm):
    """configs/agent/<algorithm>.yaml lists agent_defaults/<algorithm> (its Config's defaults) first, then
    itself, then its Config's values for the chosen preset, and sets only what differs; a variant (fql,
    dqc_ns, ...) builds on such a YAML and states its own values."""
    values, defaults = agent_part(algorithm)
    entries = [entry if isinstance(entry, str) else next(iter(entry.items())) for entry in defaults]
    package = "agent" if "agent" in OmegaConf.load(CONFIGS / "agent" / f"{algorithm}.yaml") else "_here_"
    assert entries == [
        f"/agent_defaults/{algorithm}@{package}",
        "_self_",
        (f"optional /agent_presets/{algorithm}@{package}", "${preset}"),
    ]
    assert values["algorithm"] == algorithm
    config_defaults = agents.agent_module(algorithm).Config.defaults()
    repeated = {key: value for key, value in values.items() if config_defaults.get(key, object()) == value}
    assert not repeated, f"configs/agent/{algorithm}.yaml repeats its Config's defaults: {repeated}"


@pytest.mark.parametrize("algorithm", sorted(agents.ALGORITHMS))
def test_a_by_domain_tables_default_is_the_configs_default(algorithm):
    """Where the paper gives no per-domain value, an algorithm's own agent falls back to its Config's default
    (a variant such as fql may set another fallback)."""
    values, _ = agent_part(algorithm)
    config_defaults = agents.agent_module(algorithm).Config.defaults()
    tables = {
        key.removesuffix(settings.BY_DOMAIN): table
        for key, table in values.items()
        if key.endswith(settings.BY_DOMAIN)
    }
    for key, table in tables.items():
        if "default" in table:
            assert table["default"] == config_defaults[key], f"{algorithm}.yaml {key}_by_domain's default"
