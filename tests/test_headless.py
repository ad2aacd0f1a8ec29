"""envs/headless.py: a quiet start without a display."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from envs import suite
from envs.headless import RendererMissing, headless_backend, require_renderer
from tests.helpers import env_cfg


def test_headless_backend_only_when_unset_and_without_display():
    libraries = {"EGL": "libEGL.so.1", "OSMesa": "libOSMesa.so"}
    assert headless_backend({}, "linux", libraries.get, gpu=True) == "egl"
    assert headless_backend({}, "linux", libraries.get) == "osmesa"  # no GPU: software rendering
    assert headless_backend({}, "linux", {"EGL": "libEGL.so.1"}.get) == "egl"
    assert headless_backend({}, "linux", {"OSMesa": "libOSMesa.so"}.get, gpu=True) == "osmesa"
    assert headless_backend({}, "linux", {}.get) == "disable"
    assert headless_backend({"DISPLAY": ""}, "linux", libraries.get, gpu=True) == "egl"
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


def test_a_renderer_that_does_not_load_is_one_line_naming_what_to_install(monkeypatch):
    def no_osmesa(*args, **kwargs):
        raise ImportError("Unable to load OpenGL library: OSMesa: cannot open shared object file")

    monkeypatch.setattr(suite.gymnasium, "make", no_osmesa)
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    with pytest.raises(RendererMissing) as raised:
        suite.make_env(env_cfg("visual_cube"))
    message = str(raised.value)
    assert "\n" not in message and "apt-get install libosmesa6" in message and "MUJOCO_GL=osmesa" in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_other_errors_of_a_visual_env_pass_through():
    def broken():
        raise RuntimeError("a bug elsewhere")

    with pytest.raises(RuntimeError, match="a bug elsewhere"):
        require_renderer(broken)


@pytest.mark.render
def test_a_real_visual_env_renders_changing_uint8_frames():
    """OGBench's visual cube renders 64x64x3 uint8 frames (OSMesa here), stacked 3 deep for acting."""
    code = (
        "import numpy as np, envs\n"
        "from tests.helpers import env_cfg\n"
        "env = envs.make_vector_env([env_cfg('visual_cube')])\n"
        "observation, _ = env.reset(seed=[0])\n"
        "assert observation.shape == (1, 64, 64, 9) and observation.dtype == np.uint8, observation.shape\n"
        "assert np.array_equal(observation[..., :3], observation[..., 6:])\n"
        "frames = [observation[..., -3:]]\n"
        "for _ in range(3):\n"
        "    observation, *_ = env.step(np.full((1, 5), 0.5, np.float32))\n"
        "    frames.append(observation[..., -3:])\n"
        "assert all(not np.array_equal(a, b) for a, b in zip(frames, frames[1:]))\n"
        "assert np.array_equal(observation[..., 3:6], frames[-2])\n"
    )
    environ = {key: value for key, value in os.environ.items() if key != "DISPLAY"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        env={**environ, "MUJOCO_GL": "osmesa"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
