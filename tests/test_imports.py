"""Import graphs read with `ast` (nothing is imported): no circle in envs/ or buffers/; envs/ never imports
buffers/ (buffers/stream.py reads its shards through envs/shards.py, not the other way round); neither envs/
nor buffers/ imports launch/ (the signal record both need is the top-level `preemption`)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at its top or inside a function: 'envs.suite', 'buffers.store', ...

    `from package import name` counts as importing `package.name` when that is a module of the repository,
    else as importing `package`.
    """
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                is_module = (ROOT / (submodule.replace(".", "/") + ".py")).is_file()
                modules.add(submodule if is_module else node.module)
    return modules


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str) -> dict[str, set[str]]:
    """Each module of `package` (`__init__` under the package's name) -> the package's modules it imports."""
    paths = sorted((ROOT / package).glob("*.py"))
    names = {module_name(path) for path in paths}
    return {module_name(path): imported_modules(path) & names for path in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of `graph`, each once, as the list of modules along it (depth-first search)."""
    found, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            circle = path[path.index(module) :]
            turned = circle[circle.index(min(circle)) :] + circle[: circle.index(min(circle))]
            if turned not in found:
                found.append(turned)
            return
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return found


def test_cycles_finds_a_circle_through_three_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", ["envs", "buffers"])
def test_no_import_circle(package):
    assert cycles(import_graph(package)) == []


@pytest.mark.parametrize(
    "package, forbidden", [("envs", "buffers"), ("envs", "launch"), ("buffers", "launch")]
)
def test_no_arrow_back_up(package, forbidden):
    importing = {
        module_name(path): sorted(m for m in imported_modules(path) if m.split(".")[0] == forbidden)
        for path in sorted((ROOT / package).glob("*.py"))
    }
    assert {module: found for module, found in importing.items() if found} == {}
