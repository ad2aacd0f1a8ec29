"""A quiet start on a machine without a display: MuJoCo's GL backend and one harmless gymnasium warning.

Imported by `envs/__init__.py` before anything imports OGBench (and through it dm_control and MuJoCo).

- dm_control, imported by OGBench's manipulation envs, picks GLFW first when `MUJOCO_GL` is unset; without
  an X display GLFW prints "X11: The DISPLAY environment variable is missing" and could not render anyway.
  When `MUJOCO_GL` is unset on Linux and there is no `DISPLAY`, a headless backend is chosen instead: EGL
  on a machine with an NVIDIA GPU and its library, else OSMesa (software, the CPU's), else EGL alone, else
  none. A `MUJOCO_GL` set by the user is never changed.
- MuJoCo and dm_control load their OpenGL library when imported (OSMesa brings LLVM beside XLA's). They are
  imported here with none, so a process that never renders (the trainer) never maps one; `load_renderer`
  loads `MUJOCO_GL`'s in a process that renders (an env worker: envs/vector.py). `MUJOCO_GL` itself keeps
  its value, so the worker processes inherit it.
- Visual envs render every observation; `require_renderer` turns a renderer that does not load into one
  line that names the fix (`apt-get install libosmesa6`, `MUJOCO_GL=osmesa` or `egl`) instead of a page of
  OpenGL traceback, whatever `MUJOCO_GL` says (`glfw` without a display ends in mujoco's FatalError).
- OGBench's manipulation envs build their action space on every access as `Box(-ones(5), ones(5),
  dtype=float32)` from float64 bounds; gymnasium warns that the cast lowers precision, though +-1 are exact
  in float32. Only that message, from gymnasium's Box, as a UserWarning, is ignored.
"""

import ctypes.util
import importlib
import os
import sys
import warnings
from collections.abc import Callable, Mapping

HEADLESS_BACKENDS = (("egl", "EGL"), ("osmesa", "OSMesa"))  # (MUJOCO_GL value, library it loads)
BOX_PRECISION_WARNING = (
    r"\x1b\[33mWARN: Box (low|high)'s precision lowered by casting to float32, "
    r"current (low|high)\.dtype=float64\x1b\[0m$"
)


RENDERER_HINT = (
    "apt-get install libosmesa6 and set MUJOCO_GL=osmesa (renders on the CPU), "
    "or MUJOCO_GL=egl on a GPU machine"
)
NO_RENDERER = "disable"  # MuJoCo's and dm_control's MUJOCO_GL value for no OpenGL library


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


def load_renderer() -> None:
    """Loads `MUJOCO_GL`'s OpenGL library into this process, which renders: MuJoCo was imported without one
    (`_import_without_renderer`) and picks its GL context class when its `gl_context` module loads."""
    from mujoco.rendering.classic import gl_context

    if not hasattr(gl_context, "GLContext"):
        importlib.reload(gl_context)


def require_renderer(make: Callable):
    """`make()` with the renderer loaded, one that fails to load reported as one line naming the fix."""
    import mujoco

    try:
        with warnings.catch_warnings():  # GLFW's without a display: the line below says it better
            warnings.filterwarnings("ignore", module="glfw")
            load_renderer()
            return make()
    except (ImportError, OSError, AttributeError, RuntimeError, mujoco.FatalError) as error:
        text = f"{type(error).__name__}: {error}".lower()
        if not isinstance(error, ImportError) and not any(word in text for word in GL_WORDS):
            raise
        backend = os.environ.get("MUJOCO_GL", "unset")
        raise RendererMissing(
            f"MuJoCo cannot render here: no OpenGL renderer starts with MUJOCO_GL={backend}; {RENDERER_HINT}"
        ) from None


def _render_one_frame() -> None:
    import mujoco

    renderer = mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 8, 8)
    renderer.render()
    renderer.close()


def renderer_error() -> str | None:
    """In a worker process, before its envs render: the one line of `RendererMissing` when no renderer
    starts here (the trainer raises it: envs/vector.py), else None."""
    try:
        require_renderer(_render_one_frame)
    except RendererMissing as missing:
        return str(missing)
    return None


def _import_without_renderer() -> None:
    """MuJoCo and dm_control imported with no OpenGL library (see the module docstring); a no-op when
    something imported them first."""
    chosen = os.environ.get("MUJOCO_GL")
    os.environ["MUJOCO_GL"] = NO_RENDERER
    try:
        import dm_control._render  # noqa: F401
        import mujoco  # noqa: F401
    finally:
        if chosen is None:
            del os.environ["MUJOCO_GL"]
        else:
            os.environ["MUJOCO_GL"] = chosen


def quiet_start() -> None:
    backend = headless_backend(os.environ, sys.platform, ctypes.util.find_library, has_gpu())
    if backend is not None:
        os.environ["MUJOCO_GL"] = backend
    _import_without_renderer()
    warnings.filterwarnings(
        "ignore", message=BOX_PRECISION_WARNING, category=UserWarning, module=r"gymnasium\.spaces\.box"
    )


quiet_start()
