"""OGBench's scripted data-collection policies, rolled out one seeded episode at a time.

It reproduces the behaviour of OGBench's `data_gen_scripts` (generate_manipspace.py for cube, scene and
puzzle play/noisy data, generate_locomaze.py for pointmaze navigate data) with OGBench's own environments and
oracles, so that a dataset generated without network access has the distribution of the published one.

Each episode seeds everything it draws from (OGBench's global NumPy RNG, used by the oracles and the noise,
and the env's own RNG) from (seed, episode index, attempt) alone, so its content depends neither on the
process that collects it nor on what that process collected before.
"""

import functools

import gymnasium
import numpy as np
from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle
from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

from envs import headless
from envs.errors import DatasetError
from envs.file_format import file_dtype
from envs.suite import domain_of

OFFICIAL_EPISODE_STEPS = 1001
# Train episodes of the published files, each OFFICIAL_EPISODE_STEPS long (a tenth as many for validation).
OFFICIAL_EPISODES = {
    **{f"cube-{n}-{kind}-v0": 1000 for n in ("single", "double") for kind in ("play", "noisy")},
    **{f"cube-triple-{kind}-v0": 3000 for kind in ("play", "noisy")},
    **{f"cube-quadruple-{kind}-v0": 5000 for kind in ("play", "noisy")},
    **{f"scene-{kind}-v0": 1000 for kind in ("play", "noisy")},
    **{f"puzzle-3x3-{kind}-v0": 1000 for kind in ("play", "noisy")},
    "pointmaze-medium-navigate-v0": 1000,
}
# OGBench's visual files are its manipulation files rendered: the same oracles in the `visual-` env.
OFFICIAL_EPISODES.update(
    {f"visual-{name}": episodes for name, episodes in OFFICIAL_EPISODES.items() if "maze" not in name}
)
VISUAL = "visual-"

# Per-episode probability range of stacking the new target cube on another cube.
_P_STACK = {
    "cube-single": (0.0, 0.0),
    "cube-double": (0.0, 0.25),
    "cube-triple": (0.05, 0.35),
    "cube-quadruple": (0.1, 0.5),
}
_MANIPSPACE_DOMAINS = (*_P_STACK, "scene", "puzzle-3x3", "puzzle-4x4", "puzzle-4x5", "puzzle-4x6")
_POINTMAZE_DOMAINS = ("pointmaze-medium", "pointmaze-large", "pointmaze-giant", "pointmaze-teleport")
_PLAN_NOISE = dict(noise=0.1, noise_smoothing=0.5)
_MARKOV_MIN_NORM = 0.4
_MAX_MARKOV_XI = 0.1
_POINTMAZE_NOISE = 0.5


def _seed_episode(seed: int, index: int, attempt: int) -> int:
    """Seeds OGBench's global NumPy RNG for this episode; returns the seed for `env.reset`."""
    global_seed, env_seed = np.random.SeedSequence([seed, index, attempt]).generate_state(2)
    np.random.seed(global_seed)
    return int(env_seed)


def _stack(steps: list[dict]) -> dict[str, np.ndarray]:
    """Per-step records -> arrays in the dtypes of OGBench's published files."""
    return {
        key: np.asarray([step[key] for step in steps], file_dtype(key, np.asarray(steps[0][key]).dtype))
        for key in steps[0]
    }


class ManipspaceCollector:
    """Cube, scene and puzzle data: OGBench's plan oracles ('play') or Markov oracles with noise ('noisy')."""

    def __init__(
        self, domain: str, dataset_type: str, version: str, max_episode_steps: int, visual: bool = False
    ):
        self.domain = domain
        self.noisy = dataset_type == "noisy"
        make = functools.partial(
            gymnasium.make,
            f"{VISUAL if visual else ''}{domain}-{version}",
            terminate_at_goal=False,
            mode="data_collection",
            max_episode_steps=max_episode_steps,
        )
        self.env = headless.require_renderer(make) if visual else make()
        self.oracles = self._make_oracles()
        self.p_stack = _P_STACK.get(domain, (0.5, 0.5))
        self.p_random_action = (0.2 if domain.startswith("puzzle") else 0.1) if self.noisy else 0.0
        self.has_button_states = hasattr(self.env.unwrapped, "_cur_button_states")

    def _make_oracles(self) -> dict:
        env = self.env
        if self.domain.startswith("puzzle"):
            if self.noisy:
                return {
                    "button": ButtonMarkovOracle(
                        env=env, min_norm=_MARKOV_MIN_NORM, gripper_always_closed=True
                    )
                }
            return {"button": ButtonPlanOracle(env=env, gripper_always_closed=True, **_PLAN_NOISE)}
        if self.domain == "scene":
            if self.noisy:
                return {
                    "cube": CubeMarkovOracle(env=env, min_norm=_MARKOV_MIN_NORM, max_step=100),
                    "button": ButtonMarkovOracle(env=env, min_norm=_MARKOV_MIN_NORM),
                    "drawer": DrawerMarkovOracle(env=env, min_norm=_MARKOV_MIN_NORM),
                    "window": WindowMarkovOracle(env=env, min_norm=_MARKOV_MIN_NORM),
                }
            return {
                "cube": CubePlanOracle(env=env, **_PLAN_NOISE),
                "button": ButtonPlanOracle(env=env, **_PLAN_NOISE),
                "drawer": DrawerPlanOracle(env=env, **_PLAN_NOISE),
                "window": WindowPlanOracle(env=env, **_PLAN_NOISE),
            }
        if self.noisy:
            return {"cube": CubeMarkovOracle(env=env, min_norm=_MARKOV_MIN_NORM)}
        return {"cube": CubePlanOracle(env=env, **_PLAN_NOISE)}

    def collect(self, seed: int, index: int) -> dict[str, np.ndarray]:
        # Scene episodes that push the block out of view are discarded and re-collected, as OGBench does.
        attempt = 0
        while True:
            episode = self._episode(_seed_episode(seed, index, attempt))
            if self.domain != "scene" or _scene_healthy(episode["qpos"]):
                return episode
            attempt += 1

    def _episode(self, env_seed: int) -> dict[str, np.ndarray]:
        env = self.env
        ob, info = env.reset(seed=env_seed)
        p_stack = np.random.uniform(*self.p_stack)
        xi = np.random.uniform(0, _MAX_MARKOV_XI) if self.noisy else 0.0
        agent = self.oracles[info["privileged/target_task"]]
        agent.reset(ob, info)
        steps, done = [], False
        while not done:
            if np.random.rand() < self.p_random_action:
                # Uniform over the action box, like OGBench's `action_space.sample()`, but from the seeded
                # RNG: ManipSpace builds a fresh, unseeded action space on every access.
                action = np.random.uniform(-1, 1, size=env.action_space.shape)
            else:
                action = np.asarray(agent.select_action(ob, info))
                if self.noisy:
                    action = action + np.random.normal(0, [xi, xi, xi, 3 * xi, 10 * xi], action.shape)
            action = np.clip(action, -1, 1)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if agent.done:
                agent_ob, agent_info = env.unwrapped.set_new_target(p_stack=p_stack)
                agent = self.oracles[agent_info["privileged/target_task"]]
                agent.reset(agent_ob, agent_info)
            step = dict(
                observations=ob,
                actions=action,
                terminals=done,
                qpos=info["prev_qpos"],
                qvel=info["prev_qvel"],
            )
            if self.has_button_states:
                step["button_states"] = info["prev_button_states"]
            steps.append(step)
            ob = next_ob
        return _stack(steps)


def _scene_healthy(qpos: np.ndarray) -> bool:
    """Whether the scene's block stayed in view: never too far right, too far left only inside the drawer."""
    block_xyz = qpos[:, 14:17]
    too_far_right = block_xyz[:, 1] >= 0.29
    outside_drawer = (block_xyz[:, 1] <= -0.3) & ((block_xyz[:, 2] < 0.06) | (block_xyz[:, 2] > 0.08))
    return not (too_far_right.any() or outside_drawer.any())


class PointmazeCollector:
    """Pointmaze navigate data: a noisy BFS oracle heading for random junctions and dead ends in turn."""

    def __init__(self, domain: str, version: str, max_episode_steps: int):
        self.env = gymnasium.make(
            f"{domain}-{version}", terminate_at_goal=False, max_episode_steps=max_episode_steps
        )
        maze_map = self.env.unwrapped.maze_map
        self.all_cells = [(int(i), int(j)) for i, j in zip(*np.nonzero(maze_map == 0), strict=True)]
        self.vertex_cells = [cell for cell in self.all_cells if not _is_hallway(maze_map, *cell)]

    def _random_cell(self, cells: list) -> tuple[int, int]:
        return cells[np.random.randint(len(cells))]

    def collect(self, seed: int, index: int) -> dict[str, np.ndarray]:
        env, maze = self.env, self.env.unwrapped
        env_seed = _seed_episode(seed, index, attempt=0)
        task_info = dict(
            init_ij=self._random_cell(self.all_cells), goal_ij=self._random_cell(self.vertex_cells)
        )
        ob, _ = env.reset(seed=env_seed, options=dict(task_info=task_info))
        steps, done = [], False
        while not done:
            xy = maze.get_xy()
            direction = maze.get_oracle_subgoal(xy, maze.cur_goal_xy)[0] - xy
            action = direction / (np.linalg.norm(direction) + 1e-6) + np.random.normal(0, _POINTMAZE_NOISE, 2)
            action = np.clip(action, -1, 1)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if info["success"]:
                maze.set_goal(self._random_cell(self.vertex_cells))
            steps.append(
                dict(
                    observations=ob,
                    actions=action,
                    terminals=done,
                    qpos=info["prev_qpos"],
                    qvel=info["prev_qvel"],
                )
            )
            ob = next_ob
        return _stack(steps)


def _is_hallway(maze_map: np.ndarray, i: int, j: int) -> bool:
    """A straight corridor cell (open on two opposite sides, walled on the others): never a navigate goal."""
    up, down, left, right = maze_map[i - 1, j], maze_map[i + 1, j], maze_map[i, j - 1], maze_map[i, j + 1]
    vertical = up == 0 and down == 0 and left == 1 and right == 1
    horizontal = left == 0 and right == 0 and up == 1 and down == 1
    return bool(vertical or horizontal)


def _collector_kind(dataset_name: str) -> tuple[str, str, list[str]] | None:
    """('manipspace' or 'pointmaze', domain, [dataset type, version]) of a plain or visual dataset name that
    OGBench's scripted oracles can collect, None for any other (antmaze, humanoidmaze: expert policies)."""
    words = dataset_name.removeprefix(VISUAL).split("-")
    domain = domain_of(dataset_name.removeprefix(VISUAL))
    rest = words[len(domain.split("-")) :]  # [dataset type, version] for a plain dataset name
    if len(rest) == 2 and domain in _MANIPSPACE_DOMAINS and rest[0] in ("play", "noisy"):
        return "manipspace", domain, rest
    if len(rest) == 2 and domain in _POINTMAZE_DOMAINS and rest[0] == "navigate":
        return "pointmaze", domain, rest
    return None


def can_generate(dataset_name: str) -> bool:
    """Whether the scripted oracles can generate `dataset_name` ('cube-double-play-v0') here."""
    return _collector_kind(dataset_name) is not None


def make_collector(dataset_name: str, max_episode_steps: int):
    """The collector for a dataset name such as 'cube-double-play-v0' or 'pointmaze-medium-navigate-v0'.

    A visual manipulation name ('visual-cube-double-play-v0') runs the same oracles in OGBench's visual env,
    each observation its rendered 64x64x3 frame, as OGBench's generate_manipspace.py does with
    --env_name=visual-cube-double-v0 (the oracles read the privileged state in `info`, never the pixels).
    """
    visual = dataset_name.startswith(VISUAL)
    kind = _collector_kind(dataset_name)
    dataset_name = dataset_name.removeprefix(VISUAL)
    if kind is not None and kind[0] == "manipspace":
        _, domain, (dataset_type, version) = kind
        return ManipspaceCollector(domain, dataset_type, version, max_episode_steps, visual)
    if kind is not None:
        _, domain, (_, version) = kind
        return PointmazeCollector(domain, version, max_episode_steps)
    raise DatasetError(
        f"cannot generate '{dataset_name}' locally: OGBench's scripted oracles cover <domain>-play-v0 and "
        f"<domain>-noisy-v0 for {', '.join(_MANIPSPACE_DOMAINS)}, and <domain>-navigate-v0 for "
        f"{', '.join(_POINTMAZE_DOMAINS)}; download it or pass env.dataset_path"
    )
