"""A quiet start on a machine without a display: MuJoCo's GL backend and one harmless gymnasium warning.

Imported by `envs/__init__.py` before anything imports OGBench (and through it dm_control and MuJoCo).

- dm_control, imported by OGBench's manipulation envs, picks GLFW first when `MUJOCO_GL` is unset; without
  an X display GLFW prints "X11: The DISPLAY environment variable is missing" and could not render anyway.
  When `MUJOCO_GL` is unset on Linux and there is no `DISPLAY`, a headless backend is chosen instead: EGL
  on a machine with an NVIDIA GPU and its library, else OSMesa (software, the CPU's), else EGL alone, else
  none. A `MUJOCO_GL` set by the user is never changed.
- Visual envs render every observation; `require_renderer` turns a renderer that does not load into one
  line that says what to install (`apt-get install libosmesa6`) instead of a page of OpenGL traceback.
- OGBench's manipulation envs build their action space on every access as `Box(-ones(5), ones(5),
  dtype=float32)` from float64 bounds; gymnasium warns that the cast lowers precision, though +-1 are exact
  in float32. Only that message, from gymnasium's Box, as a UserWarning, is ignored.
"""

import ctypes.util
import os
import sys
import warnings
from collections.abc import Callable, Mapping

HEADLESS_BACKENDS = (("egl", "EGL"), ("osmesa", "OSMesa"))  # (MUJOCO_GL value, library it loads)
BOX_PRECISION_WARNING = (
    r"\x1b\[33mWARN: Box (low|high)'s precision lowered by casting to float32, "
    r"current (low|high)\.dtype=float64\x1b\[0m$"
)


RENDERER_HINT = "apt-get install libosmesa6 (then MUJOCO_GL=osmesa renders on a CPU), or EGL on a GPU machine"


GL_WORDS = ("opengl", "osmesa", "mesa", "egl", "libgl", "glcontext", "gl context", "pyopengl")


class RendererMissing(RuntimeError):
    """No OpenGL renderer loads for MuJoCo, so a visual env cannot render its observations."""


def headless_backend(
    environ: Mapping[str, str],
    platform: str,
    find_library: Callable[[str], str | None],
    gpu: bool = False,
) -> str | None:
    """The MUJOCO_GL value to set, or None to leave MuJoCo's choice alone (set by the user, or a display)."""
    if "MUJOCO_GL" in environ or environ.get("DISPLAY") or not platform.startswith("linux"):
        return None
    order = HEADLESS_BACKENDS if gpu else HEADLESS_BACKENDS[::-1]
    for backend, library in order:
        if find_library(library):
            return backend
    return "disable"


def has_gpu() -> bool:
    """Whether an NVIDIA GPU's device is present (EGL renders on it)."""
    return os.path.exists("/dev/nvidiactl")


def require_renderer(make: Callable):
    """`make()`, with an OpenGL renderer that fails to load reported as one line naming what to install."""
    try:
        return make()
    except (ImportError, OSError, AttributeError, RuntimeError) as error:
        text = f"{type(error).__name__}: {error}".lower()
        if not isinstance(error, ImportError) and not any(word in text for word in GL_WORDS):
            raise
        backend = os.environ.get("MUJOCO_GL", "unset")
        raise RendererMissing(
            f"visual envs render with MuJoCo but no renderer loads (MUJOCO_GL={backend}): {RENDERER_HINT}"
        ) from None


def quiet_start() -> None:
    backend = headless_backend(os.environ, sys.platform, ctypes.util.find_library, has_gpu())
    if backend is not None:
        os.environ["MUJOCO_GL"] = backend
    warnings.filterwarnings(
        "ignore", message=BOX_PRECISION_WARNING, category=UserWarning, module=r"gymnasium\.spaces\.box"
    )


quiet_start()
