"""Speed of what trains: fused updates, chunk sampling, action selection and the online loop.

    python launch/benchmark.py                               # QC-FQL at paper sizes
    python launch/benchmark.py --agents qc_fql,qc,rlpd --online-steps 50
    python launch/benchmark.py --frames --repeats 20          # the visual store: bytes, gathers, crop
    python launch/benchmark.py --runs 1,4,8,20               # vectors: aggregate updates/s, env steps/s
    python launch/benchmark.py --stream                      # offline updates/s: shards streamed vs resident
    python launch/benchmark.py --sweep alpha=30,100,300,1000  # an alpha vector beside a seed vector of 4
    python launch/benchmark.py --run-map --runs 4             # jax.vmap against jax.lax.map over 4 runs
    python launch/benchmark.py --evaluation 1,2 env=pointmaze # one evaluation with 1, then 2 eval.workers
    python launch/benchmark.py --update-cost --agents qc_fql,qc env=visual_cube  # GFLOP, convolutions
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python launch/benchmark.py --runs 4 --devices 1,2

Prints one JSON object. Figures come from the same jitted functions the train loop calls
(launch/engine/fused.py), on synthetic datasets with the sizes of the config's env (cube-double by default).
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from hydra import compose, initialize_config_dir

import agents
import buffers
import envs
from agents.step import random_crop
from launch.engine import acting, devices, fused, settings
from launch.engine.chunk_data import frame_stack_of, stacked_shape
from launch.engine.fused import fused_updates
from launch.engine.run import Run
from launch.engine.vector import stack
from launch.speed.stream import bench_stream
from launch.speed.synthetic import synthetic_dataset, synthetic_replay
from launch.speed.timing import (
    agent_bytes,
    matmul_gflop_per_s,
    peak_device_bytes,
    process_costs,
    timed,
    timed_in_turn,
    update_cost,
    update_flops,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def run_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose("config", overrides=list(overrides))


def small_data_config(agent_name: str, workdir: Path, *overrides: str):
    """A run of `agent_name` on 2 generated episodes of 101 steps (in workdir/data), logging nothing: the
    real loops' speed without a real dataset."""
    return run_config(
        f"agent={agent_name}",
        f"env.dataset_dir={workdir / 'data'}",
        "env.download=false",
        "env.generate.num_episodes=2",
        "env.generate.max_episode_steps=101",
        "logger.mode=disabled",
        *overrides,
    )


def bench_sampling(num: int, batch_size: int, chunk_length: int, repeats: int) -> dict:
    """Jitted chunk sampling on the device store vs NumPy fancy-indexing of a flat host layout."""
    data = synthetic_dataset(num, obs_dim=40, action_dim=5)
    store = buffers.from_dataset(data)
    sample = jax.jit(lambda key: buffers.sample_chunks(store, key, batch_size, chunk_length, 0.99))
    keys = iter(jax.random.split(jax.random.PRNGKey(0), repeats + 1))
    device_seconds = timed(lambda: jax.block_until_ready(sample(next(keys))), repeats)

    rng = np.random.default_rng(0)
    discounts = 0.99 ** np.arange(chunk_length)

    def numpy_sample():
        idx = rng.integers(0, num - chunk_length + 1, batch_size)[:, None] + np.arange(chunk_length)
        terminals = np.maximum.accumulate(data["terminals"][idx], axis=1)
        return {
            "observations": data["observations"][idx[:, 0]],
            "actions": data["actions"][idx],
            "rewards": np.cumsum(data["rewards"][idx] * discounts, axis=1),
            "masks": np.minimum.accumulate(data["masks"][idx], axis=1),
            "terminals": terminals,
            "valid": np.concatenate([np.ones((batch_size, 1)), 1 - terminals[:, :-1]], axis=1),
            "next_observations": data["next_observations"][idx],
        }

    both_layout = sum(value.nbytes for value in data.values())
    return {
        "store_transitions": num,
        "store_bytes_per_transition": round(buffers.store.bytes_per_transition(store), 1),
        "store_bytes_fraction_of_obs_and_next_obs_layout": round(buffers.nbytes(store) / both_layout, 3),
        "jit_sample_ms": round(1e3 * device_seconds, 4),
        "numpy_sample_ms": round(1e3 * timed(numpy_sample, repeats), 4),
    }


def vector_case(
    agent_name: str,
    overrides: list[str],
    dispatch: int,
    runs: int,
    sweep: tuple = (),
    run_map: str | None = None,
    shared_count: bool = True,
    num_devices: int = 1,
) -> tuple[dict, callable, dict]:
    """A vector of `runs` runs (a vector of one is a single run) on a shared synthetic dataset, ready to
    time: its description, `updates(count)` (a call of `count` fused updates of every run) and its state
    (agents, rngs, replay).

    sweep: (key, values): run i has agent setting `key` = values[i] (a hyperparameter vector), seed 0.
    run_map: "vmap" or "map" (None: the backend's choice, launch/engine/fused.py RUN_MAPS). shared_count: one
    unbatched count for every run, as every offline dispatch of the train loop; False: a count per run, as
    online catch-ups. num_devices > 1: the run axis sharded over that many local devices, as `devices=N`
    trains (always vmapped)."""
    cfg = run_config(f"agent={agent_name}", *overrides)
    agent_cfg = settings.agent_settings(cfg, envs.domain_of(cfg.env.name))
    env = envs.make_offline_env(cfg.env)  # the spaces, unrendered
    obs_shape, action_dim = env.observation_space.shape, env.action_space.shape[0]
    env.close()
    frame_shape = obs_shape if len(obs_shape) > 1 else None  # a visual env: its frames, stacked by the replay
    obs_dim = obs_shape[0] if frame_shape is None else stacked_shape(obs_shape, frame_stack_of(cfg.env))
    members = [({**agent_cfg, sweep[0]: value}, 0) for value in sweep[1]] if sweep else None
    members = members or [(agent_cfg, seed) for seed in range(runs)]
    agent = stack([agents.make_agent(settings_, seed, obs_dim, action_dim) for settings_, seed in members])
    replay, online = synthetic_replay(cfg, obs_dim, action_dim, runs, frame_shape)
    state = {"agent": agent, "rng": jax.random.split(jax.random.PRNGKey(0), runs), "replay": replay}
    if num_devices > 1:
        placement = devices.Placement(devices.select(num_devices, runs))
        state["agent"], state["rng"] = placement.runs((state["agent"], state["rng"]))
        state["replay"], run_map = placement.replay(replay), "vmap"

    def updates(count):
        def run():
            state["agent"], state["rng"], metrics, _, _ = fused_updates(
                state["agent"],
                state["rng"],
                state["replay"],
                jnp.int32(count) if shared_count else jnp.full((runs,), count, jnp.int32),
                batch_size=cfg.batch_size,
                online=online,
                run_map=run_map,
            )
            jax.block_until_ready(metrics)

        return run

    description = {
        "agent": agent_name,
        "env": cfg.env.name,
        "runs": runs,
        "vector": f"{sweep[0]}={list(sweep[1])}" if sweep else "seeds",
        "run_map": run_map or fused.run_map_of_backend(),
        "count": "shared" if shared_count else "per run",
        "devices": num_devices,
        "chunk_length": agent_cfg["chunk_length"],
        "batch_size": cfg.batch_size,
        "hidden_dims": agent_cfg.get("hidden_dims"),
        "updates_per_dispatch": dispatch,
        "device_bytes_agents": agent_bytes(state["agent"]),
        "device_bytes_replay": buffers.nbytes(state["replay"]),
    }
    state["obs_dim"] = obs_dim
    return description, updates, state


def single_run_figures(description: dict, updates, state: dict, repeats: int) -> dict:
    """What only a single run reports: updates/s at one update per dispatch, XLA's FLOPs per update, the
    GFLOP/s of its timed dispatches beside the device's matmul ceiling, and the latency of one action
    selection."""
    one = jax.tree_util.tree_map(lambda leaf: leaf[0], state["agent"])
    obs_dim, key = state["obs_dim"], jax.random.PRNGKey(1)
    frames = isinstance(obs_dim, tuple)  # a visual env's stacked uint8 frames
    observation = jnp.zeros((1, *obs_dim) if frames else (1, obs_dim), jnp.uint8 if frames else jnp.float32)
    gflop = round(update_flops(one, state["replay"], description["batch_size"]) / 1e9, 2)
    # a decision as the run acts: a fresh carry, so an open-loop agent queries its chunk policy
    carry = acting.stack_carries([acting.initial_carry(state["agent"], observation[0], None)])

    def decide():
        return acting.act_runs(state["agent"], observation, carry, key[None])

    width = max(description["hidden_dims"] or [256])
    return {
        "updates_per_s_one_per_dispatch": round(1 / timed(updates(1), max(repeats, 5)), 2),
        "gflop_per_update": gflop,
        "gflop_per_s": round(gflop * description["updates_per_s_per_run"], 1),
        "matmul_gflop_per_s": round(matmul_gflop_per_s(description["batch_size"], width), 1),
        "action_selection_ms": round(1e3 * timed(lambda: jax.block_until_ready(decide()), 50), 3),
    }


def bench_update_cost(agent_name: str, overrides: list[str]) -> dict:
    """One run's update and action selection as XLA compiles them, untimed: GFLOP and traced convolutions
    (launch/speed/timing.py update_cost). Cheap at any size, since nothing runs."""
    description, _, state = vector_case(agent_name, overrides, dispatch=1, runs=1)
    one = jax.tree_util.tree_map(lambda leaf: leaf[0], state["agent"])
    keys = ("agent", "env", "chunk_length", "batch_size", "hidden_dims")
    return {key: description[key] for key in keys} | update_cost(
        one, state["replay"], description["batch_size"]
    )


def bench_vectors(cases: list[dict], dispatch: int, repeats: int) -> list[dict]:
    """Per-run and aggregate updates/s of every case (keyword arguments of `vector_case` beside `dispatch`),
    timed in turn; a single run also reports one update per dispatch, XLA's FLOPs and action selection."""
    built = [vector_case(dispatch=dispatch, **case) for case in cases]
    seconds = timed_in_turn(
        {index: updates(dispatch) for index, (_, updates, _) in enumerate(built)}, repeats
    )
    results = []
    for index, (result, updates, state) in enumerate(built):
        result["updates_per_s_per_run"] = round(dispatch / seconds[index], 2)
        result["updates_per_s_aggregate"] = round(result["runs"] * dispatch / seconds[index], 2)
        if result["runs"] == 1:
            result |= single_run_figures(result, updates, state, repeats)
        results.append(result)
    return results


def bench_sweep(agent_name: str, overrides: list[str], dispatch: int, repeats: int, sweep: str) -> dict:
    """A hyperparameter vector (`--sweep alpha=30,100,300,1000`) against a seed vector of the same size,
    timed in turn: aggregate updates/s of both and their ratio."""
    key, values = sweep.split("=")
    values = tuple(float(value) for value in values.split(","))
    common = {"agent_name": agent_name, "overrides": overrides, "runs": len(values)}
    seeds, swept = bench_vectors([common, {**common, "sweep": (key, values)}], dispatch, repeats)
    ratio = swept["updates_per_s_aggregate"] / seeds["updates_per_s_aggregate"]
    return {"seed_vector": seeds, "sweep_vector": swept, "ratio": round(ratio, 3)}


def bench_run_maps(agent_name: str, overrides: list[str], dispatch: int, repeats: int, runs: int) -> dict:
    """jax.vmap against jax.lax.map over a vector of `runs` seeds, with a shared and a per-run count, timed
    in turn: aggregate updates/s of each."""
    common = {"agent_name": agent_name, "overrides": overrides, "runs": runs}
    cases = [
        {**common, "run_map": run_map, "shared_count": shared}
        for shared in (True, False)
        for run_map in ("vmap", "map")
    ]
    results = bench_vectors(cases, dispatch, repeats)
    rates = {f"{r['run_map']}, {r['count']} count": r["updates_per_s_aggregate"] for r in results}
    return {"agent": agent_name, "runs": runs, "updates_per_s_aggregate": rates}


def bench_online(agent_name: str, overrides: list[str], runs: int, steps: int, workdir: Path) -> dict:
    """Environment steps/s of the real online loop (launch/engine/protocol.py) at UTD 1 for a vector of
    `runs` runs (seeds 0..runs-1) on a small generated dataset: act, step the envs in parallel, insert,
    update."""
    cfg = small_data_config(
        agent_name,
        workdir,
        f"seed=[{','.join(map(str, range(runs)))}]",
        "offline_steps=0",
        "start_training=0",
        "random_action_steps=0",
        f"online_steps={10 * steps}",
        *(f"{key}={10 * steps}" for key in ("eval_interval", "log_interval", "save_interval")),
        *overrides,
    )
    run = Run(cfg, workdir / f"{agent_name}-{runs}")
    try:
        run.start()
        run.counters.phase = "online"
        online = run.kind.online()

        def advance(count):
            for _ in range(count):
                online.catch_up(every_run=False)
                online.step()
            jax.block_until_ready(run.agent)

        advance(2 * run.agent_config.chunk_length)  # compiles the update and the policy query
        start = time.perf_counter()
        advance(steps)
        seconds = time.perf_counter() - start
    finally:
        run.close()
    return {
        "agent": agent_name,
        "runs": runs,
        "online_env_steps_per_s_per_run": round(steps / seconds, 2),
        "online_env_steps_per_s_aggregate": round(runs * steps / seconds, 2),
    }


def bench_frames(num: int, batch_size: int, chunk_length: int, frame_stack: int, repeats: int) -> dict:
    """A visual store: 64x64x3 uint8 frames kept once, sampled as stacks of `frame_stack` by index; its
    bytes per transition, what 1M transitions take, and per call of the jitted chunk sampler its wall time,
    CPU time and minor page faults (launch/speed/timing.py `process_costs`): unstacked,
    stacked with every step's next observation (what SUPE-GT reads) and with the last step's only (what a
    TD target reads, `every_next=False`), then that last sampler followed by the random crop in one jit as
    the update runs it (agents/step.py `random_crop`), with the batch's draw cropping and not."""
    data = synthetic_dataset(num, obs_dim=1, action_dim=5)
    frames = np.random.default_rng(0).integers(0, 256, (num + 1, 64, 64, 3), np.uint8)
    data.update(observations=frames[:-1], next_observations=frames[1:])
    stacked, plain = buffers.from_dataset(data, frame_stack), buffers.from_dataset(data)
    keys = itertools.cycle(jax.random.split(jax.random.PRNGKey(0), 8))

    def sampler(store, every_next: bool, aug_prob: float | None = None):
        def sample(store, key):
            sample_key, crop_key = jax.random.split(key)
            batch = buffers.sample_chunks(
                store, sample_key, batch_size, chunk_length, 0.99, every_next=every_next
            )
            return batch if aug_prob is None else random_crop(batch, crop_key, aug_prob)

        sample = jax.jit(sample)
        return lambda: jax.block_until_ready(sample(store, next(keys)))

    cases = {
        "unstacked": sampler(plain, True),
        "stacked_every_next": sampler(stacked, True),
        "stacked_last_next": sampler(stacked, False),
        "stacked_last_next_cropped": sampler(stacked, False, 1.0),
        "stacked_last_next_not_cropped": sampler(stacked, False, 0.0),
    }
    seconds = timed_in_turn(cases, repeats)
    per_transition = buffers.store.bytes_per_transition(stacked)
    return {
        "store_transitions": num,
        "frame_stack": frame_stack,
        "store_bytes_per_transition": round(per_transition, 1),
        "store_gb_per_1m_transitions": round(per_transition * 1e6 / 1e9, 2),
        "jit_sample_ms": round(1e3 * seconds["stacked_last_next"], 4),
        "per_call": {
            name: {"ms": round(1e3 * seconds[name], 3), **process_costs(call, repeats)}
            for name, call in cases.items()
        },
    }


def bench_evaluation(agent_name: str, overrides: list[str], workers: int, workdir: Path) -> dict:
    """Wall-clock of one evaluation (eval_episodes episodes of an untrained agent, which mostly run to the
    step limit) of a single run with its episodes spread over `workers` env processes, after a first
    evaluation that starts the processes and compiles the policy query."""
    cfg = small_data_config(agent_name, workdir, f"eval.workers={workers}", *overrides)
    run = Run(cfg, workdir / f"{agent_name}-eval-{workers}")
    try:
        run.start()
        run.kind.evaluate([0], [0])
        start = time.perf_counter()
        (metrics,), _ = run.kind.evaluate([0], [1])
        seconds = time.perf_counter() - start
    finally:
        run.close()
    episodes = cfg.eval_episodes
    return {
        "agent": agent_name,
        "workers": workers,
        "episodes": episodes,
        "mean_episode_length": metrics["eval/episode_length"],
        "evaluation_s": round(seconds, 2),
        "s_per_episode": round(seconds / episodes, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", default="qc_fql", help="comma-separated configs/agent names")
    parser.add_argument("--dispatch", type=int, default=20, help="updates fused per dispatch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--online-steps", type=int, default=25, help="0 skips the online-loop figure")
    parser.add_argument(
        "--runs", default="1", help="comma-separated vector sizes R (runs trained together in one process)"
    )
    parser.add_argument(
        "--sweep", help="only a hyperparameter vector against a seed vector of its size, e.g. alpha=30,100"
    )
    parser.add_argument(
        "--run-map", action="store_true", help="only jax.vmap against jax.lax.map for each R > 1 of --runs"
    )
    parser.add_argument(
        "--devices",
        default="1",
        help="comma-separated device counts the runs are sharded over, e.g. 1,2 (see devices= in train.py)",
    )
    parser.add_argument(
        "--update-cost",
        action="store_true",
        help="only XLA's GFLOP per update and per action selection, and the update's traced convolutions",
    )
    parser.add_argument(
        "--evaluation", help="only the evaluation wall-clock for each comma-separated eval.workers, e.g. 1,2"
    )
    parser.add_argument("--sampling-transitions", type=int, default=1_000_000)
    parser.add_argument(
        "--frame-transitions", type=int, default=20_000, help="transitions of the visual (64x64x3) store"
    )
    parser.add_argument(
        "--frames", action="store_true", help="only the visual store figure: its gathers and crop per call"
    )
    parser.add_argument(
        "--stream", action="store_true", help="only the streaming figure: shards swapped vs all resident"
    )
    parser.add_argument("--swap-every", type=int, default=10, help="updates between swaps with --stream")
    parser.add_argument("--shards", type=int, default=8, help="synthetic shards with --stream")
    parser.add_argument(
        "--shard-size", default="10x101", help="episodes x steps per synthetic shard with --stream"
    )
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides applied to every agent, e.g. batch_size=256"
    )
    args = parser.parse_args()
    device = jax.devices()[0]
    report = {"device": f"{device.platform}:{device.device_kind}", "jax": jax.__version__}
    if args.frames:
        report["frames"] = bench_frames(args.frame_transitions, 256, 5, 3, args.repeats)
        print(json.dumps(report, indent=2))
        return
    if args.stream:
        shard_steps = tuple(int(part) for part in args.shard_size.split("x"))
        cfg = run_config("agent=qc_fql", *args.overrides)
        report["stream"] = bench_stream(cfg, args.repeats, args.swap_every, args.shards, shard_steps)
        print(json.dumps(report, indent=2))
        return
    if args.sweep:
        for name in args.agents.split(","):
            report[name] = bench_sweep(name, args.overrides, args.dispatch, args.repeats, args.sweep)
        print(json.dumps(report, indent=2))
        return
    if args.evaluation:
        with tempfile.TemporaryDirectory() as workdir:
            report["evaluation"] = [
                bench_evaluation(name, args.overrides, int(workers), Path(workdir))
                for name in args.agents.split(",")
                for workers in args.evaluation.split(",")
            ]
        print(json.dumps(report, indent=2))
        return
    if args.update_cost:
        report["update_cost"] = [bench_update_cost(name, args.overrides) for name in args.agents.split(",")]
        print(json.dumps(report, indent=2))
        return
    if args.run_map:
        report["run_maps"] = [
            bench_run_maps(name, args.overrides, args.dispatch, args.repeats, int(runs))
            for name in args.agents.split(",")
            for runs in args.runs.split(",")
            if int(runs) > 1
        ]
        print(json.dumps(report, indent=2))
        return
    report["sampling"] = bench_sampling(args.sampling_transitions, 256, 5, 50)
    report["frames"] = bench_frames(args.frame_transitions, 256, 5, 3, 20)
    report["agents"] = [
        result
        for name in args.agents.split(",")
        for result in bench_vectors(
            [
                {
                    "agent_name": name,
                    "overrides": args.overrides,
                    "runs": int(runs),
                    "num_devices": int(num),
                }
                for runs in args.runs.split(",")
                for num in args.devices.split(",")
            ],
            args.dispatch,
            args.repeats,
        )
    ]
    report["peak_device_bytes"] = peak_device_bytes()  # of every case together: one --runs value per process
    if args.online_steps:
        with tempfile.TemporaryDirectory() as workdir:
            report["online"] = [
                bench_online(name, args.overrides, int(runs), args.online_steps, Path(workdir))
                for name in args.agents.split(",")
                for runs in args.runs.split(",")
            ]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
