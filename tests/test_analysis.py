"""The analysis room (launch/analysis/) reads finished runs and never imports the engine: from launch it
imports only itself and launch.reliability (the metrics.jsonl reader)."""

import ast
from pathlib import Path

import pytest

ANALYSIS = Path(__file__).resolve().parents[1] / "launch" / "analysis"
ALLOWED = ("launch.analysis", "launch.reliability")


def launch_imports(path: Path) -> list[str]:
    """The modules of package `launch` that a file imports (`from launch import x` counts as launch.x)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; expected absolute launch.analysis imports"
            names = [f"{node.module}.{alias.name}" for alias in node.names] if node.module == "launch" else []
            found += names or [node.module]
    return [name for name in found if name == "launch" or name.startswith("launch.")]


@pytest.mark.parametrize("path", sorted(ANALYSIS.glob("*.py")), ids=lambda path: path.name)
def test_the_analysis_room_never_imports_the_engine(path):
    outside = [
        name
        for name in launch_imports(path)
        if not any(name == room or name.startswith(f"{room}.") for room in ALLOWED)
    ]
    assert outside == [], f"{path.name} imports {outside}; expected only {' and '.join(ALLOWED)} from launch"


def test_the_check_sees_an_import_of_the_engine(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("import launch.run\nfrom launch import settings, plot\nfrom launch.fused import act\n")
    assert launch_imports(path) == ["launch.run", "launch.settings", "launch.plot", "launch.fused"]
