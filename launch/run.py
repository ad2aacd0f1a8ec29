"""The offline-to-online protocol for a vector of runs (Li, Zhou & Levine 2025, "Offline-to-online protocol").

`seed`, `env.task`, the agent's sweepable hyperparameters (`agent.alpha`, `agent.lr`, ...: agents/config.py),
`utd_ratio` and `offline_ratio` may be lists: every combination is a run, and all of them train in this one
process, the run axis split over `devices`. A config without lists is a vector of one, through the same code.

1. Offline: `offline_steps` updates on chunks of the dataset, fused `updates_per_dispatch` at a time and
   `jax.vmap`-ed over the runs.
2. Online: `online_steps` environment steps, one env per run stepped in parallel worker processes. Each
   policy query returns a chunk whose first `agent.execution_length` actions run open-loop (the queue is
   cleared on reset); transitions go to the run's own replay; after `start_training` steps, `utd_ratio`
   updates per step are owed, and a run catches up on them when its chunk is done, its episode ends, or
   the step is a multiple of a log, evaluation or save interval (so every run of a vector updates, evaluates
   and saves exactly when it would alone).
Evaluation every `eval_interval` steps and at the end of each phase; checkpoints every `save_interval`, from
which a run resumes exactly (an open episode is replayed from its reset seed and recorded actions).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from tqdm import tqdm

import agents
import buffers
import envs
from launch import devices, preemption, settings
from launch.checkpoints import Checkpointer, check_resumable
from launch.evaluation import episode_seed, evaluate_runs
from launch.fused import act_runs, env_transitions, eval_runs, fused_updates, insert
from launch.logger import METRICS_FILE, Logger

log = logging.getLogger(__name__)

# episode_seed purposes
ONLINE_EPISODES = 0


class NonFiniteLossError(RuntimeError):
    """A loss or metric became NaN or inf; the run stops and keeps its last good checkpoint."""


@dataclasses.dataclass(frozen=True)
class Member:
    """One run of a vector: its own config (a scalar on every axis), its own directory and its value on
    each axis of the vector."""

    cfg: DictConfig
    run_dir: Path
    axes: tuple = ()

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    @property
    def task(self):
        return self.cfg.env.get("task")

    @property
    def env_cfg(self) -> dict:
        return OmegaConf.to_container(self.cfg.env, resolve=True)


def as_list(value) -> list:
    return list(value) if isinstance(value, ListConfig | list | tuple) else [value]


# Top-level settings that may be vector axes: the host loop counts utd_ratio per run, and each run's
# offline_ratio is a leaf of its replay (buffers/replay.py).
RUN_AXES = ("utd_ratio", "offline_ratio")


@dataclasses.dataclass(frozen=True)
class Axis:
    """One list of a vector's config: its dotted key (`agent.alpha`) and values."""

    key: str
    values: tuple

    @property
    def name(self) -> str:
        """The axis in a member's directory name and W&B tags: the key's last part (`alpha`, `task`)."""
        return self.key.rsplit(".", 1)[-1]


def _refuse_shape_list(key: str, values) -> None:
    raise ValueError(
        f"{key}={values} is a list, but {key} changes array shapes, so its values cannot share one vector; "
        f"run one vector per value with -m (a multirun of vectors): -m {key}=A,B"
    )


def vector_axes(cfg: DictConfig) -> list[Axis]:
    """The lists of `cfg` that make a vector, outermost first: the agent's sweepable settings (in the agent
    group's order), `utd_ratio`, `offline_ratio`, `env.task`, `seed`. A list for any other scalar setting
    (or a list of lists for a tuple one, such as agent.hidden_dims) fails in one line pointing to -m."""
    config_cls = agents.agent_module(cfg.agent.algorithm).Config
    fields = {field.name: field for field in dataclasses.fields(config_cls)}
    axes = []
    for key, value in cfg.agent.items():
        if not isinstance(value, ListConfig):
            continue
        if key in config_cls.sweepable():
            axes.append(Axis(f"agent.{key}", tuple(value)))
        elif (
            key not in fields
            or not isinstance(fields[key].default, tuple)
            or any(isinstance(item, ListConfig) for item in value)
        ):
            _refuse_shape_list(f"agent.{key}", list(value))
    for key, value in cfg.items():
        if isinstance(value, ListConfig) and key != "seed":
            if key not in RUN_AXES:
                _refuse_shape_list(key, list(value))
            axes.append(Axis(key, tuple(value)))
    for key in ("env.task", "seed"):
        value = OmegaConf.select(cfg, key)
        if isinstance(value, ListConfig):
            axes.append(Axis(key, tuple(value)))
    for axis in axes:
        integers = axis.key in ("seed", "env.task")
        expected = "distinct integers" if integers else "distinct numbers"
        valid = (int,) if integers else (int, float)
        values = axis.values
        if len(set(values)) != len(values) or not all(
            isinstance(v, valid) and not isinstance(v, bool) or (integers and v is None) for v in values
        ):
            raise ValueError(f"invalid setting {axis.key}={list(values)}: expected {expected}")
    return axes


def is_vector(cfg: DictConfig) -> bool:
    """Whether any setting is a list (a vector of runs, even of one)."""
    return bool(vector_axes(cfg))


def vector_members(cfg: DictConfig, run_dir: Path) -> list[Member]:
    """The runs of `cfg`: one per combination of its lists (the last axis, `seed`, varying fastest), each in
    a directory naming its value on every axis, `alpha=100,task=2,seed=0/`; a config without lists is one
    run in `run_dir` itself."""
    axes = vector_axes(cfg)
    if not axes:
        return [Member(cfg, run_dir)]
    members = []
    for values in itertools.product(*(axis.values for axis in axes)):
        member_cfg = copy.deepcopy(cfg)
        with open_dict(member_cfg):
            for axis, value in zip(axes, values, strict=True):
                if value is not None:
                    OmegaConf.update(member_cfg, axis.key, value)
        name = ",".join(f"{axis.name}={value}" for axis, value in zip(axes, values, strict=True))
        members.append(Member(member_cfg, run_dir / name, tuple(zip(axes, values, strict=True))))
    return members


def run_tags(member: Member) -> list[str]:
    """W&B tags that dashboards group by, with the member's value on each swept hyperparameter."""
    cfg = member.cfg
    swept = [f"{axis.name}={value}" for axis, value in member.axes if axis.key not in ("seed", "env.task")]
    return [
        cfg.agent.name,
        cfg.env.name,
        f"chunk_length={cfg.agent.chunk_length}",
        f"task={cfg.env.get('task')}",
        f"seed={cfg.seed}",
        *swept,
    ]


def next_multiple(step: int, interval: int) -> int:
    """The first multiple of `interval` strictly after `step`."""
    return (step // interval + 1) * interval


def stack(trees: list):
    """Pytrees of one structure stacked on a new leading run axis. The static parts (e.g. an agent's
    optimiser functions) are the first tree's: equal in behaviour, if not in identity, across the runs."""
    treedef = jax.tree_util.tree_structure(trees[0])
    leaves = [jax.tree_util.tree_leaves(tree) for tree in trees]
    return jax.tree_util.tree_unflatten(treedef, [jnp.stack(column) for column in zip(*leaves, strict=True)])


def _row_step(line: str) -> int:
    return json.loads(line)["step"]


def logged_rows(path: Path) -> list[str]:
    """The rows of a metrics.jsonl; a torn last row (the process killed mid-write) is dropped, with a
    warning."""
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        try:
            json.loads(line)
        except json.JSONDecodeError:
            if number < len(lines):
                raise ValueError(f"{path} line {number} is not JSON: {line[:80]!r}") from None
            log.warning("%s: dropping its torn last line %r (a write cut short)", path, line[:80])
            return lines[:-1]
    return lines


class Run:
    """The state of a vector of training runs and the few operations the protocol is made of."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = run_dir
        self.members = vector_members(cfg, run_dir)
        first = self.members[0].cfg
        domain = envs.domain_of(first.env.name)
        self.member_settings = [settings.agent_settings(member.cfg, domain) for member in self.members]
        self.agent_settings = self.member_settings[0]  # the settings every run shares (static ones)
        self.stream = None  # the shard stream of a sharded (100M/1B) dataset
        self.dataset_records: list[dict] = []  # each run's dataset provenance (envs/provenance.py)
        self.rng = stack([jax.random.PRNGKey(member.seed + 1) for member in self.members])
        self.placement = None  # one device
        self.build()
        # The online-only agents (RLPD family) skip pre-training whatever offline_steps says (presets set it).
        self.offline_steps = cfg.offline_steps if self.agent_config.offline_pretraining else 0
        self.counters = {
            "phase": "offline",
            "offline_step": 0,
            "env_step": 0,
            "elapsed": 0.0,
            "eval_round": 0,
            "runs": [{"episode": 0, "success": {}, "online": None} for _ in self.members],
        }
        self.checkpointer = Checkpointer(run_dir)
        self._vector_envs: dict = {}
        self.start_step = self.saved_step = None  # the step resumed from; of the latest checkpoint written
        self._resume_or_refuse()
        self.loggers = [
            self._logger(m, record) for m, record in zip(self.members, self.dataset_records, strict=True)
        ]

    @property
    def num_runs(self) -> int:
        return len(self.members)

    @property
    def agent_config(self):
        return agents.make_config(self.agent_settings)

    # ---- building ----------------------------------------------------------------------------------------

    def build(self) -> None:
        """The runs' agents and their replay (sequence agents build theirs differently: sequence_run.py)."""
        if self.cfg.env.get("goal_conditioned"):
            self.replay, obs_dim, action_dim = self.goal_replay()
        elif self.cfg.env.get("dataset_size"):
            self.replay, obs_dim, action_dim = self.streamed_replay()
        else:
            datasets, dataset_index, task_rows = self.load_datasets()
            obs_dim = datasets[0]["observations"].shape[-1]
            action_dim = datasets[0]["actions"].shape[-1]
            self.replay = buffers.make_replay(
                datasets,
                dataset_index,
                task_rows,
                self.cfg.buffer_size,
                self.cfg.online_steps,
                self.offline_ratios,
            )
        self.agent = stack(
            [
                agents.make_agent(agent_settings, member.seed, obs_dim, action_dim)
                for member, agent_settings in zip(self.members, self.member_settings, strict=True)
            ]
        )
        chosen = devices.select(self.cfg.get("devices", "all"), self.num_runs)
        self.placement = devices.Placement(chosen) if len(chosen) > 1 else None
        self.place()
        log.info(
            "replay: %d runs on %d %s device(s); %.1f MiB (the offline data stored once per device)",
            self.num_runs,
            len(chosen),
            chosen[0].platform,
            buffers.nbytes(self.replay) / 2**20,
        )

    @property
    def offline_ratios(self) -> list[float] | None:
        """Each run's `offline_ratio`, or None when the runs pool online data with the offline data."""
        ratios = [member.cfg.offline_ratio for member in self.members]
        return None if ratios[0] is None else ratios

    def place(self) -> None:
        """With several devices: each run's agent, RNG and online data on its device, the offline data on
        all of them."""
        if self.placement is not None:
            self.agent, self.rng = self.placement.runs((self.agent, self.rng))
            self.replay = self.placement.replay(self.replay)

    def streamed_replay(self) -> tuple:
        """A replay whose offline store holds `env.shards_in_memory` shards of a sharded (100M/1B) set,
        streamed by `self.stream` (envs/shards.py); the shards carry a reward row per task of the vector.

        The runs of a vector share one stream, in the shard order of the vector's first seed.
        """
        cfg, first = self.cfg, self.members[0]
        directories = {envs.shards.sharded_dir(member.cfg.env, member.seed) for member in self.members}
        if len(directories) > 1:
            raise ValueError(
                f"the runs of a vector stream one sharded set, found {sorted(map(str, directories))}: "
                "sets of a non-published size are per seed, so give one seed"
            )
        if isinstance(
            cfg.utd_ratio, ListConfig
        ):  # the runs share the stream's swaps, every shard_interval updates
            raise ValueError(
                f"utd_ratio={list(cfg.utd_ratio)}: a vector streaming a sharded set needs one utd_ratio"
            )
        tasks = list(dict.fromkeys(member.task for member in self.members))
        names = [next(m for m in self.members if m.task == task).env_cfg["name"] for task in tasks]
        self.stream = envs.shards.open_stream(first.cfg.env, first.seed, names)
        offline = self.stream.initial_store()
        replay = buffers.replay.replay_over(
            offline,
            [0] * self.num_runs,
            [offline.capacity] * self.num_runs,
            [tasks.index(member.task) for member in self.members],
            cfg.buffer_size,
            cfg.online_steps,
            self.offline_ratios,
        )
        log.info("shards: %d in the set, resident %s", len(self.stream.paths), self.resident_shards())
        per_shard = offline.capacity // cfg.env.shards_in_memory
        record = envs.provenance.describe_shards(
            envs.shards.sharded_dir(first.cfg.env, first.seed),
            self.stream.paths,
            per_shard * len(self.stream.paths),
        )
        self.dataset_records = [record] * self.num_runs
        return replay, offline.observations.shape[-1], offline.actions.shape[-1]

    def resident_shards(self) -> list[str]:
        return [path.name for path in self.stream.resident()]

    def swap_shard(self) -> None:
        """The next shard of the stream over the oldest resident one (read ahead on a background thread)."""
        self.replay = self.replay.replace(offline=self.stream.swap(self.replay.offline))
        self.place()
        log.info(
            "shard swap %d at step %d: resident %s (swaps waited %.2f s for the reader in all)",
            self.stream.position,
            self.global_step,
            self.resident_shards(),
            self.stream.waited_s,
        )

    def goal_replay(self) -> tuple:
        """The goal-relabelled replay of an oraclerep dataset (offline only), shared by every run, and the
        agent's input sizes: the observation followed by the goal representation."""
        paths = {envs.resolve_dataset(member.cfg.env, member.seed) for member in self.members}
        if len(paths) > 1:
            raise ValueError(
                f"a goal-conditioned vector trains on one dataset, found {sorted(map(str, paths))}"
            )
        member = self.members[0]
        env, eval_env, train, _ = envs.goal_conditioned.make_env_and_datasets(member.env_cfg, member.seed)
        env.close()
        eval_env.close()
        record = envs.describe_dataset(member.cfg.env, paths.pop(), len(train["actions"]))
        self.dataset_records = [record] * self.num_runs
        obs_dim = train["observations"].shape[-1] + train["oracle_reps"].shape[-1]
        return buffers.make_goal_replay(train), obs_dim, train["actions"].shape[-1]

    def load_datasets(self) -> tuple[list[dict], list[int], list[int]]:
        """Each distinct dataset file of the runs, read once, with a reward and mask row per task of the
        vector (OGBench's single-task relabelling; rows of tasks that no run pairs with the file stay 0 and
        are never read); which dataset and row each run uses."""
        tasks = list(dict.fromkeys(member.task for member in self.members))
        paths = [envs.resolve_dataset(member.cfg.env, member.seed) for member in self.members]
        files = list(dict.fromkeys(paths))
        datasets, records = [], []
        for path in files:
            on_file: dict = {}  # the first run of each task that reads this file
            for member, member_path in zip(self.members, paths, strict=True):
                if member_path == path:
                    on_file.setdefault(member.task, member)
            runs = list(on_file.values())
            train = envs.load_tasks([member.env_cfg for member in runs], runs[0].seed)
            rows = np.zeros((2, len(tasks), len(train["rewards"][0])), np.float32)
            rows[:, [tasks.index(task) for task in on_file]] = train["rewards"], train["masks"]
            datasets.append({**train, "rewards": rows[0], "masks": rows[1]})
            records.append(envs.describe_dataset(runs[0].cfg.env, path, rows.shape[-1]))
        sizes = {(d["observations"].shape[-1], d["actions"].shape[-1]) for d in datasets}
        if len(sizes) > 1:
            raise ValueError(
                f"the runs of a vector must share observation and action sizes, found {sorted(sizes)}"
            )
        dataset_index = [files.index(path) for path in paths]
        self.dataset_records = [records[index] for index in dataset_index]
        return datasets, dataset_index, [tasks.index(member.task) for member in self.members]

    def _logger(self, member: Member, dataset: dict) -> Logger:
        """The run's logger; its config (.hydra/config.yaml and W&B) gains `dataset`: the provenance of the
        data it trains on (path, transitions, sha256, source)."""
        (member.run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        logger_cfg = member.cfg.logger
        if self.num_runs > 1 and logger_cfg.group is None:  # a vector's runs share one W&B group
            logger_cfg = OmegaConf.merge(logger_cfg, {"group": self.run_dir.name})
        saved_path = member.run_dir / ".hydra" / "config.yaml"
        # Hydra writes the config of a single run (kept as written); a member's is written here
        hydra_written = member.run_dir == self.run_dir and saved_path.exists()
        saved = (
            OmegaConf.load(saved_path)
            if hydra_written
            else OmegaConf.create(OmegaConf.to_container(member.cfg, resolve=True))
        )
        with open_dict(saved):
            saved.dataset = dataset
        OmegaConf.save(saved, saved_path)
        config = OmegaConf.to_container(member.cfg, resolve=True)
        config["agent"] = self.member_settings[self.members.index(member)]
        config["dataset"] = dataset
        return Logger(
            member.run_dir,
            config,
            logger_cfg,
            run_tags(member),
            elapsed_offset=self.counters["elapsed"],
        )

    def vector_env(self, purpose: str):
        """The runs' envs for `purpose` ("online" or "eval"), made on first use."""
        if purpose not in self._vector_envs:
            self._vector_envs[purpose] = envs.make_vector_env([member.env_cfg for member in self.members])
        return self._vector_envs[purpose]

    # ---- bookkeeping -------------------------------------------------------------------------------------

    @property
    def global_step(self) -> int:
        """x-axis of every curve: updates offline, then offline_steps + environment steps online."""
        return self.counters["offline_step"] + self.counters["env_step"]

    @property
    def state(self) -> dict:
        return {"agent": self.agent, "replay": self.replay.run_part(), "rng": self.rng}

    def _resume_or_refuse(self) -> None:
        latest = self.checkpointer.latest_step()
        if latest is None:
            if self.cfg.resume:
                log.info("resume=true but %s holds no checkpoint: starting from scratch", self.run_dir)
            for member in self.members:
                (member.run_dir / METRICS_FILE).unlink(missing_ok=True)
            return
        if not self.cfg.resume:
            raise FileExistsError(
                f"{self.run_dir} already holds checkpoints (latest step {latest}); pass resume=true to "
                "continue that run, or choose another run dir with hydra.run.dir=..."
            )
        step, state, self.counters = self.checkpointer.restore(self.resume_template)
        self.agent, self.rng = state["agent"], state["rng"]
        part = state["replay"]
        if isinstance(self.replay, buffers.replay.Replay):
            part = self._grown(*part)
        self.replay = self.replay.with_run_part(part)
        if self.stream is not None:
            self.replay = self.replay.replace(offline=self.stream.restore(self.counters["stream"]))
        self.place()
        for member in self.members:  # drop rows logged after the checkpoint; they will be logged again
            metrics = member.run_dir / METRICS_FILE
            if metrics.exists():
                rows = [row for row in logged_rows(metrics) if _row_step(row) <= step]
                metrics.write_text("".join(row + "\n" for row in rows))
        self.start_step = self.saved_step = step
        log.info("resumed from step %d (%s phase)", step, self.counters["phase"])

    def _grown(self, online, *rest) -> tuple:
        """A restored run part with the online replay grown to this run's size (online_steps grew)."""
        size = self.replay.online.actions.shape[1]
        if online.actions.shape[1] == size:
            return online, *rest
        log.info("online_steps grew: each online replay grows from %d to %d", online.actions.shape[1], size)
        return jax.vmap(buffers.store.grow)(online, self.replay.online), *rest

    @property
    def resolved_config(self) -> dict:
        return OmegaConf.to_container(self.cfg, resolve=True)

    def resume_template(self, saved_config: dict, counters: dict) -> dict:
        """The state a checkpoint saved with `saved_config` restores into: this run's, with the online replay
        at its saved size (grown after the restore when online_steps grew). Refuses what cannot continue."""
        check_resumable(saved_config, self.resolved_config, counters, self.agent_config.offline_pretraining)
        state = self.state
        if not isinstance(self.replay, buffers.replay.Replay):
            return state
        online = self.replay.online
        capacity = buffers.replay.online_capacity(saved_config["buffer_size"], saved_config["online_steps"])
        saved = buffers.store.empty(online.observations.shape[-1], online.actions.shape[-1], capacity)
        saved = jax.tree_util.tree_map(
            lambda leaf: jnp.broadcast_to(leaf, (self.num_runs,) + leaf.shape), saved
        )
        return {**state, "replay": (saved, *self.replay.run_part()[1:])}

    def save(self) -> None:
        preemption.pause_for_tests("save", self.global_step)
        self.counters["elapsed"] = self.loggers[0].elapsed
        if self.stream is not None:
            self.counters["stream"] = self.stream.state()
        self.checkpointer.save(self.global_step, self.state, self.counters, self.resolved_config)
        self.saved_step = self.global_step

    def stop_if_signalled(self, online_runs: OnlineRuns | None = None) -> None:
        """After a signal (launch/preemption.py): a checkpoint of this step, unless one was just saved (with
        the open episodes of `online_runs`), then `Interrupted`."""
        if self.global_step != self.start_step:
            preemption.pause_for_tests("step", self.global_step)
        signum = preemption.received()
        if signum is None:
            return
        if self.saved_step != self.global_step:
            if online_runs is not None:
                self.counters["runs"] = online_runs.saved_counters()
            self.save()
        raise preemption.Interrupted(signum, self.global_step)

    def log(self, metrics: list[dict], phase: str) -> None:
        """Each run's metrics to its own logger."""
        for logger, run_metrics in zip(self.loggers, metrics, strict=True):
            if run_metrics:
                logger.log(run_metrics, self.global_step, phase)

    def train(self, num_updates: list[int], online: bool) -> list[dict]:
        """Fused updates, `num_updates[i]` for run i; stops at the first non-finite metric, naming the run
        and the update step. Returns each run's mean metrics ({} for a run given no update)."""
        self.agent, self.rng, metrics, first_bad, bad = fused_updates(
            self.agent,
            self.rng,
            self.replay,
            # one count for all (every offline dispatch): an unbatched trip count
            jnp.int32(num_updates[0]) if len(set(num_updates)) == 1 else jnp.asarray(num_updates, jnp.int32),
            batch_size=self.cfg.batch_size,
            online=online,
            run_map="vmap" if self.placement is not None else None,  # a sharded run axis is batched
        )
        metrics, first_bad, bad = jax.device_get((metrics, first_bad, bad))
        for index in np.flatnonzero(first_bad >= 0):
            names = ", ".join(sorted(name for name, flags in bad.items() if flags[index]))
            bad_update = int(first_bad[index])
            if online:
                where = f"online update {bad_update + 1} of {num_updates[index]} at step {self.global_step}"
            else:
                where = f"offline update step {self.counters['offline_step'] + bad_update + 1}"
            run = f" in run {self.members[index].run_dir.name}" if self.num_runs > 1 else ""
            raise NonFiniteLossError(
                f"non-finite {names} at {where}{run}; the last good checkpoint in "
                f"{self.checkpointer.directory} is kept (resume=true restarts from it)"
            )
        return [
            {key: float(value[index]) for key, value in metrics.items()} if num_updates[index] else {}
            for index in range(self.num_runs)
        ]

    def evaluate(self, phase: str) -> float:
        """Evaluate every run in one vector of envs; logs each run's metrics, returns the mean success.

        Each value of `eval.execution_lengths` and `eval.num_samples` evaluates the same agents again on the
        same episodes, logged as `eval/success@execution_length=2` and so on beside `eval/success`.
        """
        preemption.pause_for_tests("eval", self.global_step)
        round_index = self.counters["eval_round"]

        def rollouts(agent, execution_length, video_episodes=0):
            return evaluate_runs(
                eval_runs if hasattr(agent, "eval_actions") else act_runs,
                agent,
                self.vector_env("eval"),
                [member.seed for member in self.members],
                self.cfg.eval_episodes,
                round_index,
                execution_length,
                video_episodes,
            )

        results, videos = rollouts(self.agent, self.execution_length, self.cfg.eval.video_episodes)
        variants = [
            (f"execution_length={length}", self.agent, length) for length in self.cfg.eval.execution_lengths
        ]
        for num_samples in self.cfg.eval.num_samples:
            agent = self.agent.replace(config=self.agent.config.replace_static(num_samples=num_samples))
            variants.append((f"num_samples={num_samples}", agent, self.execution_length))
        for suffix, agent, execution_length in variants:
            for run_metrics, extra in zip(results, rollouts(agent, execution_length)[0], strict=True):
                run_metrics.update({f"{key}@{suffix}": value for key, value in extra.items()})
        self.counters["eval_round"] += 1
        for counters, metrics in zip(self.counters["runs"], results, strict=True):
            counters["success"][phase] = metrics["eval/success"]
        self.log(results, phase)
        for logger, run_videos in zip(self.loggers, videos, strict=True):
            for index, frames in enumerate(run_videos):
                logger.log_video(f"eval/video_{index}", frames, self.global_step)
        return float(np.mean([metrics["eval/success"] for metrics in results]))

    @property
    def execution_length(self) -> int | None:
        """Actions of each chunk executed before the policy is queried again (None: the whole chunk)."""
        return self.cfg.agent.get("execution_length")

    # ---- the two phases ----------------------------------------------------------------------------------

    def offline_phase(self) -> None:
        cfg = self.cfg
        bar = tqdm(
            total=self.offline_steps, initial=self.counters["offline_step"], desc="offline", unit="upd"
        )
        intervals = [cfg.log_interval, cfg.eval_interval, cfg.save_interval]
        if self.stream is not None:
            intervals.append(cfg.env.shard_interval)
        while self.counters["offline_step"] < self.offline_steps:
            step = self.counters["offline_step"]
            boundary = min(next_multiple(step, interval) for interval in intervals)
            num_updates = min(cfg.updates_per_dispatch, boundary - step, self.offline_steps - step)
            metrics = self.train([num_updates] * self.num_runs, online=False)
            self.counters["offline_step"] = step = step + num_updates
            bar.update(num_updates)
            last = step == self.offline_steps
            if step % cfg.log_interval == 0 or last:
                self.log([{f"offline/{k}": v for k, v in run.items()} for run in metrics], "offline")
            if step % cfg.eval_interval == 0 or last:
                bar.set_postfix(success=self.evaluate("offline"))
            if self.stream is not None and step % cfg.env.shard_interval == 0:
                self.swap_shard()
            if step % cfg.save_interval == 0 or last:
                self.save()
            self.stop_if_signalled()
        bar.close()

    def online_phase(self) -> None:
        cfg = self.cfg
        counters = self.counters
        counters["phase"] = "online"
        if cfg.online_steps == 0:
            return
        vector_env = self.vector_env("online")
        runs = OnlineRuns(self, vector_env)
        bar = tqdm(total=cfg.online_steps, initial=counters["env_step"], desc="online", unit="step")
        intervals = [cfg.log_interval, cfg.eval_interval, cfg.save_interval]
        # The reference (ColinQiyangLi/qc main.py) swaps offline only: online, the last shard stays resident
        # beside the online data unless env.swap_online; then a swap every shard_interval updates.
        swapping = self.stream is not None and cfg.env.swap_online
        if swapping:
            intervals.append(max(1, cfg.env.shard_interval // self.members[0].cfg.utd_ratio))
        upcoming = [next_multiple(counters["env_step"], interval) for interval in intervals]
        while True:
            step = counters["env_step"]
            last = step == cfg.online_steps
            reached = [step >= due or last for due in upcoming]
            runs.catch_up(every_run=any(reached))
            if any(reached):
                bar.update(step - bar.n)
                if reached[0]:
                    self.log([{f"online/{k}": v for k, v in run.items()} for run in runs.metrics], "online")
                if reached[1]:
                    bar.set_postfix(success=self.evaluate("online"))
                if swapping and reached[3] and not last:
                    self.swap_shard()
                if reached[2]:
                    counters["runs"] = runs.saved_counters()
                    self.save()
                upcoming = [
                    next_multiple(step, i) if hit else u
                    for i, hit, u in zip(intervals, reached, upcoming, strict=True)
                ]
            if last:
                break
            self.stop_if_signalled(runs)
            runs.step()
        bar.close()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        for vector_env in self._vector_envs.values():
            vector_env.close()
        for logger in self.loggers:
            logger.close()
        self.checkpointer.close()


class OnlineRuns:
    """The host side of the online phase: each run's env observation, chunk queue, owed updates and open
    episode, stepped together."""

    def __init__(self, run: Run, vector_env):
        self.run, self.vector_env = run, vector_env
        cfg = run.cfg
        self.act_keys = stack([jax.random.PRNGKey(member.seed + 2) for member in run.members])
        saved = [counters["online"] or {} for counters in run.counters["runs"]]
        self.queues = [[np.asarray(a, np.float32) for a in s.get("queue", [])] for s in saved]
        self.owed = [s.get("owed", 0) for s in saved]
        self.returns = [s.get("return", 0.0) for s in saved]
        self.episode_actions = [s.get("actions", []) for s in saved]
        self.random_actions = cfg.random_action_steps
        self.metrics: list[dict] = [{} for _ in run.members]  # each run's latest update metrics
        shape = vector_env.single_observation_space.shape
        self.observations = np.zeros((run.num_runs,) + shape, np.float32)
        self.observations = envs.reset_runs(
            vector_env,
            self.observations,
            range(run.num_runs),
            [self.episode_seed(index) for index in range(run.num_runs)],
            self.episode_actions,
        )
        for index, s in enumerate(saved):
            if "observation" in s and not np.array_equal(self.observations[index], s["observation"]):
                raise RuntimeError(
                    f"resuming {run.members[index].run_dir}: replaying the open episode's actions did not "
                    "reproduce its state; the env is not deterministic given its reset seed and actions"
                )

    def catch_up(self, every_run: bool) -> None:
        """The owed updates of each run whose chunk is done (of every run, at an interval step), in one
        dispatch; the other runs wait for the end of their chunk, as they would alone."""
        counts = [
            owed if (every_run or not queue) else 0
            for owed, queue in zip(self.owed, self.queues, strict=True)
        ]
        if not any(counts):
            return
        for index, metrics in enumerate(self.run.train(counts, online=True)):
            if counts[index]:
                self.metrics[index] = metrics
                self.owed[index] = 0

    def episode_seed(self, index: int) -> int:
        member = self.run.members[index]
        return episode_seed(member.seed, ONLINE_EPISODES, self.run.counters["runs"][index]["episode"])

    def saved_counters(self) -> list[dict]:
        """The per-run counters with the open episode, for a checkpoint (JSON)."""
        saved = []
        for index, counters in enumerate(self.run.counters["runs"]):
            online = {
                "queue": [action.tolist() for action in self.queues[index]],
                "owed": self.owed[index],
                "return": self.returns[index],
                "actions": self.episode_actions[index],
                "observation": self.observations[index].tolist(),
            }
            saved.append({**counters, "online": online})
        return saved

    def refill(self, step: int) -> None:
        """A new chunk for every run whose queue is empty, from one policy query."""
        empty = [index for index, queue in enumerate(self.queues) if not queue]
        if not empty:
            return
        if step < self.random_actions:
            for index in empty:
                rng = np.random.default_rng([self.run.members[index].seed, step])
                self.queues[index] = [rng.uniform(-1, 1, self.vector_env.single_action_space.shape)]
            return
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(self.act_keys, step)
        chunks = np.asarray(act_runs(self.run.agent, self.observations, keys))
        for index in empty:
            self.queues[index] = list(chunks[index][: self.run.execution_length])

    def step(self) -> None:
        run, cfg, counters = self.run, self.run.cfg, self.run.counters
        step = counters["env_step"]
        self.refill(step)
        actions = np.stack([np.asarray(queue.pop(0), np.float32) for queue in self.queues])
        next_observations, rewards, terminated, truncated, infos = self.vector_env.step(actions)
        run.replay = insert(
            run.replay,
            env_transitions(self.observations, actions, rewards, terminated, truncated, next_observations),
        )
        counters["env_step"] = step = step + 1
        self.observations = np.asarray(next_observations, np.float32)
        ended = []
        for index in range(run.num_runs):
            self.owed[index] += run.members[index].cfg.utd_ratio if step >= cfg.start_training else 0
            self.returns[index] += float(rewards[index])
            self.episode_actions[index].append(actions[index].tolist())
            if terminated[index] or truncated[index]:
                run.loggers[index].log(
                    {
                        "online/episode_return": self.returns[index],
                        "online/episode_length": len(self.episode_actions[index]),
                        "online/success": float(infos["success"][index]),
                    },
                    run.global_step,
                    "online",
                )
                counters["runs"][index]["episode"] += 1
                self.queues[index], self.returns[index], self.episode_actions[index] = [], 0.0, []
                ended.append(index)
        self.observations = envs.reset_runs(
            self.vector_env, self.observations, ended, [self.episode_seed(index) for index in ended]
        )
