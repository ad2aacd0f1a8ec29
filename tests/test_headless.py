"""envs/headless.py: a quiet start without a display."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envs import headless, suite
from envs.headless import RendererMissing, headless_backend, require_renderer
from tests.helpers import REPO, env_cfg, script_env, write_visual_dataset


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
    def no_osmesa():
        raise ImportError("Unable to load OpenGL library: OSMesa: cannot open shared object file")

    monkeypatch.setattr(headless, "load_renderer", no_osmesa)
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


# What a process that renders maps (OSMesa brings its LLVM, EGL and GLX their dispatch); GLFW, a windowing
# library that MuJoCo's viewer imports, opens no OpenGL library until it makes a window.
GL_LIBRARIES = ("libOSMesa", "libGL.so", "libGLX", "libEGL", "libglapi", "libGLdispatch", "libLLVM")
PRINT_GL_LIBRARIES = (
    "print('mapped:', sorted({line.split()[-1].rsplit('/', 1)[-1] for line in open('/proc/self/maps')\n"
    f"    if any(name in line for name in {GL_LIBRARIES!r})}}))\n"
)


def run_python(code: str, *args: str, **variables: str) -> subprocess.CompletedProcess:
    """`python -c code args` in this checkout without a display, with `variables` in its environment."""
    environ = {key: value for key, value in script_env(**variables).items() if key != "DISPLAY"}
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.render
def test_a_real_visual_env_renders_changing_uint8_frames_in_a_worker():
    """OGBench's visual cube renders 64x64x3 uint8 frames (OSMesa here), stacked 3 deep for acting, in a
    worker process: the process that steps it maps no OpenGL library."""
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
        "env.close()\n" + PRINT_GL_LIBRARIES
    )
    assert run_python(code, MUJOCO_GL="osmesa").stdout.splitlines()[-1] == "mapped: []"


@pytest.mark.render
def test_a_renderer_that_cannot_start_in_a_worker_is_one_line_in_the_trainer():
    """MUJOCO_GL=glfw without a display (a shell profile's leftover): the worker's renderer fails, and the
    trainer raises one line naming the fix instead of mujoco's FatalError."""
    code = (
        "import envs\n"
        "from tests.helpers import env_cfg\n"
        "try:\n"
        "    envs.make_vector_env([env_cfg('visual_cube')])\n"
        "except envs.headless.RendererMissing as missing:\n"
        "    print(missing)\n"
    )
    result = run_python(code, MUJOCO_GL="glfw")
    assert result.stdout.count("\n") == 1, result.stdout
    assert "MUJOCO_GL=glfw" in result.stdout and "apt-get install libosmesa6" in result.stdout
    assert "MUJOCO_GL=osmesa" in result.stdout and "MUJOCO_GL=egl" in result.stdout
    assert "Traceback" not in result.stderr and "FatalError" not in result.stderr, result.stderr


TRAINER = (
    "import sys\n"
    "from pathlib import Path\n"
    "from launch import train\n"
    "from tests.helpers import compose_config\n"
    "train.train(compose_config(*sys.argv[2:]), Path(sys.argv[1]))\n" + PRINT_GL_LIBRARIES
)


@pytest.mark.render
def test_the_trainer_of_a_visual_run_maps_no_opengl_library(tiny_dataset_dir, tmp_path):
    """A visual run's online and evaluation envs (a video included) render in workers; its dataset is
    checked and relabelled with the state twin: the trainer's /proc/self/maps names no OpenGL library."""
    path = write_visual_dataset(tiny_dataset_dir / "cube-double-play-v0.npz", tmp_path / "visual.npz")
    overrides = [
        "agent=qc_fql",
        "env=visual_cube",
        f"env.dataset_path={path}",
        "env.download=false",
        "env.max_episode_steps=2",
        "logger.mode=disabled",
        "agent.hidden_dims=[8]",
        "batch_size=4",
        "offline_steps=0",
        "online_steps=2",
        "random_action_steps=2",
        "start_training=100",
        "eval_episodes=1",
        "eval.video_episodes=1",
        "buffer_size=1000",
    ]
    run_dir = tmp_path / "run"
    result = run_python(TRAINER, str(run_dir), *overrides, MUJOCO_GL="osmesa")
    assert result.stdout.splitlines()[-1] == "mapped: []"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "eval/success" in row] == [2]
