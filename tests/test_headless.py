"""envs/headless.py: a quiet start without a display."""

import os
import subprocess
import sys
from pathlib import Path

from envs.headless import headless_backend


def test_headless_backend_only_when_unset_and_without_display():
    libraries = {"EGL": "libEGL.so.1", "OSMesa": "libOSMesa.so"}
    assert headless_backend({}, "linux", libraries.get) == "egl"
    assert headless_backend({}, "linux", {"OSMesa": "libOSMesa.so"}.get) == "osmesa"
    assert headless_backend({}, "linux", {}.get) == "disable"
    assert headless_backend({"DISPLAY": ""}, "linux", libraries.get) == "egl"
    assert headless_backend({"DISPLAY": ":0"}, "linux", libraries.get) is None
    assert headless_backend({"MUJOCO_GL": "glfw"}, "linux", libraries.get) is None
    assert headless_backend({}, "darwin", libraries.get) is None


def test_making_a_manipulation_env_prints_no_known_harmless_warning():
    code = (
        "import warnings, envs\n"
        "from tests.helpers import env_cfg\n"
        "env = envs.make_env(env_cfg('cube'))\n"
        "env.reset(seed=0)\n"
        "env.step(env.action_space.sample())\n"
        "warnings.warn('other warnings still show')\n"
    )
    environ = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "MUJOCO_GL")}
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "DISPLAY environment variable is missing" not in result.stderr
    assert "precision lowered" not in result.stderr
    assert "UserWarning: other warnings still show" in result.stderr
