"""A quiet start on a machine without a display: MuJoCo's GL backend and one harmless gymnasium warning.

Imported by `envs/__init__.py` before anything imports OGBench (and through it dm_control and MuJoCo).

- dm_control, imported by OGBench's manipulation envs, picks GLFW first when `MUJOCO_GL` is unset; without
  an X display GLFW prints "X11: The DISPLAY environment variable is missing" and could not render anyway.
  When `MUJOCO_GL` is unset on Linux and there is no `DISPLAY`, a headless backend is chosen instead: EGL
  when its library is installed, else OSMesa, else none (rendering then fails with dm_control's own error,
  as it would have with GLFW). A `MUJOCO_GL` set by the user is never changed.
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


def headless_backend(
    environ: Mapping[str, str], platform: str, find_library: Callable[[str], str | None]
) -> str | None:
    """The MUJOCO_GL value to set, or None to leave MuJoCo's choice alone (set by the user, or a display)."""
    if "MUJOCO_GL" in environ or environ.get("DISPLAY") or not platform.startswith("linux"):
        return None
    for backend, library in HEADLESS_BACKENDS:
        if find_library(library):
            return backend
    return "disable"


def quiet_start() -> None:
    backend = headless_backend(os.environ, sys.platform, ctypes.util.find_library)
    if backend is not None:
        os.environ["MUJOCO_GL"] = backend
    warnings.filterwarnings(
        "ignore", message=BOX_PRECISION_WARNING, category=UserWarning, module=r"gymnasium\.spaces\.box"
    )


quiet_start()
