"""Robomimic's lift, can and square tasks with their human demonstrations, as the paper's second benchmark.

A name reads `<task>-<dataset type>-low_dim`, e.g. `lift-mh-low_dim` (multi-human data). The dataset is
robomimic's `low_dim_v15.hdf5` (recorded with robosuite 1.5), found at
`<env.dataset_dir>/<task>/<dataset type>/low_dim_v15.hdf5` (the layout robomimic's download script writes)
unless `env.dataset_path` names a file. Its layout:

    data (attrs: env_args = JSON env metadata, total = number of transitions)
      demo_<n> (attrs: num_samples)
        actions (T, action_dim); rewards (T,); dones (T,); obs/<key>, next_obs/<key> (T, key_dim)

The environment is robosuite's, built from the metadata the file records (robot, controller, control rate) as
robomimic builds it, without renderers. As in the Q-chunking reference:
  - an observation concatenates OBS_KEYS, in that order;
  - the reward is the sparse success reward minus 1 (0 on success, -1 otherwise), offline and online;
  - masks are 1 - the file's `dones`; an online episode ends on success or at the task's limit (TASK_LIMITS);
  - info["success"] is the task's own success check after every step.
Demos are loaded in numeric order (demo_2 before demo_10); `terminals` marks each demo's last transition.

robosuite and h5py are an optional extra (`pip install -e ".[robomimic]"`), imported only when a robomimic
env or file is used, so the OGBench side works without them.
"""

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import gymnasium
import numpy as np

from envs.config import cfg_value
from envs.errors import DatasetError

logger = logging.getLogger(__name__)

TASK_LIMITS = {"lift": 300, "can": 300, "square": 400}  # episode steps, as in the paper
DATASET_TYPES = ("mh", "ph")  # multi-human (the paper's) and proficient-human demonstrations
HDF5_TYPE = "low_dim"
FILE_NAME = "low_dim_v15.hdf5"
OBS_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object")
# Each demo's arrays and their number of dimensions (steps first).
DEMO_LAYOUT = {
    "actions": 2,
    "rewards": 1,
    "dones": 1,
    **{f"{group}/{key}": 2 for group in ("obs", "next_obs") for key in OBS_KEYS},
}
ENV_ID = "chunkrl/RobomimicLowDim-v0"
ROBOSUITE_ENV_TYPE = 1  # robomimic's EnvType.ROBOSUITE_TYPE, recorded in the file's env metadata

# What robomimic overrides in the recorded kwargs when it builds a low-dimensional env; sparse reward.
ENV_OVERRIDES = dict(
    has_renderer=False,
    has_offscreen_renderer=False,
    ignore_done=True,  # episodes end here (success or TASK_LIMITS), not at robosuite's own horizon
    use_object_obs=True,
    use_camera_obs=False,
    camera_depths=False,
    reward_shaping=False,
)

# Known-harmless robosuite notices: at import, without its optional private macro file, robot models or
# whole-body IK (none of which lift, can or square use); at env creation, once per body part (base, legs, ...)
# that the recorded composite controller config names and a single-arm robot lacks, which robosuite drops.
# Every other robosuite message still shows.
_HARMLESS_NOTICES = (
    "No private macro file found",
    "It is recommended to use a private macro file",
    "To setup, run:",
    "Could not import robosuite_models",
    "Could not load the mink-based whole-body IK",
    "The config has defined for the controller",
)


class _HarmlessNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_HARMLESS_NOTICES)


logging.getLogger("robosuite_logs").addFilter(_HarmlessNotices())  # robosuite's logger, before it is imported
_MISSING_EXTRA = 'robomimic tasks need robosuite and h5py: pip install -e ".[robomimic]"'


def import_robosuite():
    """robosuite, or an error saying how to install it; refuses MuJoCo releases robosuite 1.5 breaks on."""
    try:
        import robosuite
    except ImportError as error:
        raise ImportError(_MISSING_EXTRA) from error
    import mujoco

    if robosuite.__version__.startswith("1.5.") and _version(mujoco.__version__) >= (3, 10):
        raise ImportError(
            f"robosuite {robosuite.__version__} builds its envs only with mujoco < 3.10, found mujoco "
            f'{mujoco.__version__}: pip install -e ".[robomimic]" installs a matching one (3.8.x)'
        )
    return robosuite


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def _h5py():
    try:
        import h5py
    except ImportError as error:
        raise ImportError(_MISSING_EXTRA) from error
    return h5py


# --- names and config ----------------------------------------------------------------------------------


def is_robomimic(name: str) -> bool:
    """Whether `name` is meant as a robomimic task (a malformed one fails in `task_of`, naming the rule)."""
    return str(name).endswith(f"-{HDF5_TYPE}")


def _name_parts(name: str) -> tuple[str, str]:
    parts = str(name).split("-")
    if (
        len(parts) != 3
        or parts[0] not in TASK_LIMITS
        or parts[1] not in DATASET_TYPES
        or parts[2] != HDF5_TYPE
    ):
        raise ValueError(
            f"unknown robomimic env '{name}': expected '<task>-<dataset type>-{HDF5_TYPE}' with task in "
            f"{tuple(TASK_LIMITS)} and dataset type in {DATASET_TYPES}, e.g. 'lift-mh-{HDF5_TYPE}'"
        )
    return parts[0], parts[1]


def task_of(name: str) -> str:
    """'square-mh-low_dim' -> 'square'; the domain that keys per-domain hyperparameters."""
    return _name_parts(name)[0]


@dataclass(frozen=True)
class RobomimicConfig:
    """The keys of configs/env/{lift,can,square}.yaml that decide the env and its file."""

    task: str
    dataset_type: str
    max_episode_steps: int
    path: Path
    dataset_dir: Path

    @classmethod
    def from_cfg(cls, env_cfg) -> "RobomimicConfig":
        task, dataset_type = _name_parts(cfg_value(env_cfg, "name"))
        if cfg_value(env_cfg, "sparse") is not True:
            raise ValueError(
                f"env.sparse: expected true for robomimic (its only reward is success - 1), found "
                f"{cfg_value(env_cfg, 'sparse')!r}"
            )
        limit = cfg_value(env_cfg, "max_episode_steps")
        if limit is None:
            limit = TASK_LIMITS[task]
        elif isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"env.max_episode_steps: expected null or an integer >= 1, found {limit!r}")
        dataset_dir = Path(str(cfg_value(env_cfg, "dataset_dir"))).expanduser()
        dataset_path = cfg_value(env_cfg, "dataset_path")
        if dataset_path is None:
            path = dataset_dir / task / dataset_type / FILE_NAME
        else:
            path = Path(str(dataset_path)).expanduser()
        return cls(task, dataset_type, limit, path, dataset_dir)


def dataset_path(env_cfg) -> Path:
    """The robomimic file of `env_cfg`, which must exist (else a DatasetError saying where it comes from)."""
    return _existing_file(RobomimicConfig.from_cfg(env_cfg))


def _existing_file(cfg: RobomimicConfig) -> Path:
    """`cfg.path`, or a DatasetError saying where robomimic's v1.5 file comes from."""
    if not cfg.path.is_file():
        default = cfg.dataset_dir / cfg.task / cfg.dataset_type / FILE_NAME
        raise DatasetError(
            f"{cfg.path}: expected robomimic's {cfg.task} ({cfg.dataset_type}) {FILE_NAME}, found no file "
            "there. Download it with robomimic's script (robomimic installed in any environment): "
            f"`python -m robomimic.scripts.download_datasets --download_dir {cfg.dataset_dir} "
            f"--tasks {cfg.task} --dataset_types {cfg.dataset_type} --hdf5_types {HDF5_TYPE}`, which writes "
            f"{default} (found there unless env.dataset_path is set), or take "
            f"v1.5/{cfg.task}/{cfg.dataset_type}/{FILE_NAME} from the Hugging Face dataset "
            "robomimic/robomimic_datasets and pass env.dataset_path=<that file>"
        )
    return cfg.path


# --- the file ------------------------------------------------------------------------------------------


def _open(path: Path):
    try:
        return _h5py().File(path, "r")
    except OSError as error:
        raise DatasetError(
            f"{path} cannot be read as HDF5 ({error}); it is probably truncated or corrupt"
        ) from None


def _data_group(path: Path, file):
    if "data" not in file:
        raise DatasetError(f"{path}: expected a group 'data' (robomimic's layout), found {sorted(file)}")
    return file["data"]


def read_env_meta(path: Path) -> dict:
    """The env metadata robomimic recorded in `path` (data.attrs["env_args"]): env_name, type, env_kwargs."""
    with _open(path) as file:
        data = _data_group(path, file)
        if "env_args" not in data.attrs:
            raise DatasetError(f"{path}: expected the env metadata in data.attrs['env_args'], found none")
        try:
            meta = json.loads(data.attrs["env_args"])
        except (TypeError, json.JSONDecodeError) as error:
            raise DatasetError(f"{path}: data.attrs['env_args'] is not JSON ({error})") from None
    missing = [key for key in ("env_name", "type", "env_kwargs") if key not in meta]
    if missing:
        raise DatasetError(f"{path}: env metadata lacks {missing}; found keys {sorted(meta)}")
    if meta["type"] != ROBOSUITE_ENV_TYPE:
        raise DatasetError(
            f"{path}: env metadata has type {meta['type']}, expected {ROBOSUITE_ENV_TYPE} (a robosuite env)"
        )
    return meta


def _demo_index(path: Path, name: str) -> int:
    match = re.fullmatch(r"demo_(\d+)", name)
    if match is None:
        raise DatasetError(f"{path}: data/{name}: expected only groups named demo_<n> under 'data'")
    return int(match.group(1))


def _read(path: Path, demo, where: str, ndim: int) -> np.ndarray:
    """`demo[where]` as an array of `ndim` dimensions with finite values, or a DatasetError naming it."""
    if where not in demo:
        group = demo.get(where.rpartition("/")[0], demo)
        raise DatasetError(
            f"{path}: {demo.name[1:]}: missing '{where}'; {group.name[1:]} holds {sorted(group)}"
        )
    array = np.asarray(demo[where])
    if array.ndim != ndim or len(array) == 0:
        raise DatasetError(
            f"{path}: {demo.name[1:]}/{where} has shape {array.shape}, expected {ndim} dimension(s) and at "
            "least one step"
        )
    bad = ~np.isfinite(array).reshape(len(array), -1).all(axis=1)
    if bad.any():
        raise DatasetError(
            f"{path}: {demo.name[1:]}/{where} holds non-finite values (first at step "
            f"{int(np.flatnonzero(bad)[0])}), expected finite numbers"
        )
    return array


def _read_demo(path: Path, demo, widths: dict) -> dict:
    """One demo's arrays by DEMO_LAYOUT key; `widths` (key -> width): set by the first demo, then checked."""
    arrays = {where: _read(path, demo, where, ndim) for where, ndim in DEMO_LAYOUT.items()}
    steps = len(arrays["actions"])
    for where, array in arrays.items():
        width = widths.setdefault(where.rpartition("/")[2], array.shape[1:])
        if array.shape != (steps, *width):
            raise DatasetError(
                f"{path}: {demo.name[1:]}/{where} has shape {array.shape}, expected {(steps, *width)} (as "
                "many steps as 'actions'; the width of the first demo and of obs and next_obs alike)"
            )
    for key, meaning in (("rewards", "success reward"), ("dones", "done signal")):
        if not np.isin(arrays[key], (0, 1)).all():
            raise DatasetError(
                f"{path}: {demo.name[1:]}/{key} holds {np.unique(arrays[key])[:5]}, expected only 0 and 1 "
                f"(robomimic's sparse {meaning})"
            )
    if demo.attrs.get("num_samples", steps) != steps:
        raise DatasetError(
            f"{path}: {demo.name[1:]}.attrs['num_samples'] = {demo.attrs['num_samples']}, expected {steps} "
            "(its number of actions)"
        )
    return arrays


def load_dataset(path: Path) -> dict:
    """The file's demos, in numeric order, as the repo's dataset dict of float32 arrays.

    observations, next_observations: (transitions, obs_dim), OBS_KEYS concatenated; actions: (transitions,
    action_dim); rewards: success - 1; masks: 1 - dones; terminals: 1 at each demo's last transition.
    Raises DatasetError naming the file, the demo and the key of anything missing, misshapen or non-finite.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: expected a robomimic {FILE_NAME} file, found none")
    with _open(path) as file:
        data = _data_group(path, file)
        names = sorted(data, key=lambda name: _demo_index(path, name))
        if not names:
            raise DatasetError(f"{path}: expected demos data/demo_<n>, found none")
        widths: dict = {}
        demos = [_read_demo(path, data[name], widths) for name in names]
        total = data.attrs.get("total")
    steps = sum(len(demo["actions"]) for demo in demos)
    if total is not None and total != steps:
        raise DatasetError(
            f"{path}: data.attrs['total'] = {total}, expected {steps} (the demos' transitions)"
        )

    def joined(arrays) -> np.ndarray:
        return np.concatenate(arrays).astype(np.float32)

    terminals = [np.zeros(len(demo["actions"]), np.float32) for demo in demos]
    for flags in terminals:
        flags[-1] = 1.0
    return {
        "observations": joined(
            [np.concatenate([demo[f"obs/{key}"] for key in OBS_KEYS], 1) for demo in demos]
        ),
        "actions": joined([demo["actions"] for demo in demos]),
        "rewards": joined([demo["rewards"] for demo in demos]) - 1.0,
        "masks": 1.0 - joined([demo["dones"] for demo in demos]),
        "terminals": joined(terminals),
        "next_observations": joined(
            [np.concatenate([demo[f"next_obs/{key}"] for key in OBS_KEYS], 1) for demo in demos]
        ),
    }


# --- the env -------------------------------------------------------------------------------------------


class RobomimicEnv(gymnasium.Env):
    """A robosuite env built from a robomimic file's env metadata, with flat float32 observations.

    `reset(seed=s)` is a function of `s` alone: robosuite draws its initial placements and joint noise from
    NumPy's global generator, which is seeded with `s` first. Reward, termination and info["success"] follow
    the module docstring; the time limit comes from gymnasium.make (`make_env`).
    """

    metadata = {"render_modes": []}

    def __init__(self, env_meta: dict):
        robosuite = import_robosuite()
        if env_meta.get("env_version") not in (None, robosuite.__version__):
            logger.warning(
                "robomimic: the dataset was recorded with robosuite %s, installed is %s",
                env_meta["env_version"],
                robosuite.__version__,
            )
        kwargs = {**env_meta["env_kwargs"], **ENV_OVERRIDES}
        self.env = robosuite.make(env_meta["env_name"], **kwargs)
        low, high = self.env.action_spec
        self.action_space = gymnasium.spaces.Box(low.astype(np.float32), high.astype(np.float32))
        dim = len(self._observation(self.env._get_observations(force_update=True)))
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (dim,), np.float32)

    @staticmethod
    def _observation(raw: dict) -> np.ndarray:
        raw = {**raw, "object": raw["object-state"]}  # robomimic's name for robosuite's object-state
        return np.concatenate([np.asarray(raw[key]).ravel() for key in OBS_KEYS]).astype(np.float32)

    def _success(self) -> float:
        return float(bool(self.env._check_success()))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            np.random.seed(seed % 2**32)
            self.action_space.seed(seed)
        observation = self._observation(self.env.reset())
        return observation, {"success": self._success()}

    def step(self, action):
        raw, reward, _, _ = self.env.step(np.asarray(action, np.float64))
        success = self._success()
        return self._observation(raw), float(reward) - 1.0, bool(success), False, {"success": success}

    def render(self):
        raise NotImplementedError(
            "robomimic envs are built without an offscreen renderer here; set eval.video_episodes=0"
        )

    def close(self):
        self.env.close()


if ENV_ID not in gymnasium.registry:
    gymnasium.register(ENV_ID, entry_point=RobomimicEnv)


def make_env(env_cfg) -> gymnasium.Env:
    """The robosuite env recorded in `env_cfg`'s file, limited to `env.max_episode_steps` (null: TASK_LIMITS).

    Reads only the config and the file, so worker processes can build it from the config alone.
    """
    cfg = RobomimicConfig.from_cfg(env_cfg)
    path = _existing_file(cfg)
    meta = read_env_meta(path)
    try:
        return gymnasium.make(ENV_ID, max_episode_steps=cfg.max_episode_steps, env_meta=meta)
    except TypeError as error:  # robosuite rejects kwargs recorded by another version
        raise DatasetError(
            f"{path}: robosuite {import_robosuite().__version__} cannot build '{meta['env_name']}' from the "
            f"recorded env metadata (recorded with robosuite {meta.get('env_version', 'unknown')}): {error}"
        ) from None


def make_env_and_datasets(env_cfg, seed: int) -> tuple[gymnasium.Env, gymnasium.Env, dict, None]:
    """The training env, the evaluation env and the dataset of `env_cfg`; no validation set (None).

    `seed` is unused: the file is read as is (the signature matches envs.make_env_and_datasets).
    """
    del seed
    cfg = RobomimicConfig.from_cfg(env_cfg)
    path = _existing_file(cfg)
    dataset = load_dataset(path)  # first: a bad file fails before two robosuite envs are built
    env, eval_env = make_env(env_cfg), make_env(env_cfg)
    for key, space in (("observations", env.observation_space), ("actions", env.action_space)):
        if dataset[key].shape[1:] != space.shape:
            raise DatasetError(
                f"{path}: '{key}' have shape {dataset[key].shape[1:]} per step, expected {space.shape} (the "
                f"{cfg.task} env's {key[:-1]} space)"
            )
    logger.info(
        "dataset: %d transitions (%d demos) from robomimic's %s -> %s",
        len(dataset["rewards"]),
        int(dataset["terminals"].sum()),
        FILE_NAME,
        path,
    )
    return env, eval_env, dataset, None
