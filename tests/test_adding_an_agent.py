"""docs/adding_an_agent.md followed to the letter: its module, YAML and registry line, taken from the page as
they are, make an agent that trains through the engine as a vector of two seeds and two learning rates,
resumes exactly after a kill, evaluates under an execution-length sweep, and runs the page's commands."""

import ast
import importlib.util
import re
import sys

import jax
import numpy as np
import pytest

import agents
from launch import train as train_module
from tests.helpers import compose_config, train_interrupted
from tests.test_docs import REPO, command_problem, commands
from tests.test_vector import TINY, assert_same_rows, rows, untimed

PAGE = REPO / "docs" / "adding_an_agent.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", PAGE.read_text(), flags=re.M | re.S)


@pytest.fixture
def searchpath(tmp_path, monkeypatch) -> str:
    """The page's three touches in a temporary place: its module as agents.bc_chunks, its registry line in
    agents.ALGORITHMS, its YAML in a config dir on Hydra's search path (the override returned)."""
    module_text, registry_line = blocks("python")
    (yaml_text,) = blocks("yaml")
    path = tmp_path / "bc_chunks.py"
    path.write_text(module_text)
    spec = importlib.util.spec_from_file_location("agents.bc_chunks", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "agents.bc_chunks", module)
    spec.loader.exec_module(module)
    ((name, module_name),) = ast.literal_eval("{" + registry_line.split("#")[0].strip() + "}").items()
    monkeypatch.setitem(agents.ALGORITHMS, name, module_name)
    agents.register_defaults()
    (tmp_path / "configs" / "agent").mkdir(parents=True)
    (tmp_path / "configs" / "agent" / f"{name}.yaml").write_text(yaml_text)
    return f"hydra.searchpath=[file://{tmp_path / 'configs'}]"


def bc_config(searchpath, dataset_dir, *overrides):
    return compose_config(
        searchpath,
        "agent=bc_chunks",
        "env=pointmaze",
        f"env.dataset_dir={dataset_dir}",
        "env.download=false",
        "logger.mode=disabled",
        *TINY,
        *overrides,
    )


VECTOR = ("seed=[0,1]", "agent.lr=[0.001,0.003]", "eval.execution_lengths=[1]")


def test_the_pages_agent_trains_as_a_vector_each_member_its_single_run(
    searchpath, tiny_dataset_dir, tmp_path
):
    vector = train_module.train(bc_config(searchpath, tiny_dataset_dir, *VECTOR), tmp_path / "vector")
    names = [member.run_dir.name for member in vector.members]
    assert names == ["lr=0.001,seed=0", "lr=0.001,seed=1", "lr=0.003,seed=0", "lr=0.003,seed=1"]
    member = vector.members[3]
    logged = rows(member.run_dir)
    evals = [row for row in logged if "eval/success" in row]
    assert evals and all("eval/success@execution_length=1" in row for row in evals)
    mse = [row["offline/actor/mse"] for row in logged if "offline/actor/mse" in row]
    assert len(mse) == 2 and mse[1] < mse[0]  # it learns: the chunk error falls offline
    alone_dir = tmp_path / "alone"
    train_module.train(
        bc_config(searchpath, tiny_dataset_dir, "seed=1", "agent.lr=0.003", "eval.execution_lengths=[1]"),
        alone_dir,
    )
    assert_same_rows(untimed(logged), untimed(rows(alone_dir)))


def test_the_pages_agent_resumes_exactly_after_a_kill(searchpath, tiny_dataset_dir, tmp_path, monkeypatch):
    full = train_module.train(bc_config(searchpath, tiny_dataset_dir, *VECTOR), tmp_path / "full")
    config = bc_config(searchpath, tiny_dataset_dir, *VECTOR)
    train_interrupted(train_module.train, config, tmp_path / "resumed", monkeypatch, online_dispatch=3)
    resumed = train_module.train(
        bc_config(searchpath, tiny_dataset_dir, *VECTOR, "resume=true"), tmp_path / "resumed"
    )
    for member in full.members:
        name = member.run_dir.name
        assert untimed(rows(tmp_path / "resumed" / name)) == untimed(rows(member.run_dir))
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.agent.params, full.agent.params)


def test_the_pages_commands_compose_once_the_agent_is_added(searchpath, monkeypatch):
    found = commands(PAGE.read_text())
    assert len(found) == 2
    for command in found:
        assert command_problem(f"{command} {searchpath}", monkeypatch) is None, command
