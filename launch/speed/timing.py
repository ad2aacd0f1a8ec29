"""How launch/benchmark.py times what trains: cases in turn, FLOPs per update, the device's matmul ceiling
and its memory."""

from __future__ import annotations

import resource
import time

import jax
import numpy as np

from launch.engine import fused


def timed_in_turn(functions: dict, repeats: int) -> dict:
    """Median seconds per call of each of `functions` (name: a call that blocks until its result is ready),
    called in turn `repeats` times after one warm-up call each: every case sees the same minutes of the
    machine, whose speed drifts by about 10% over minutes on a shared 2-core CPU, so ratios between cases
    are side by side rather than minutes apart."""
    for function in functions.values():
        function()
    samples = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            samples[name].append(time.perf_counter() - start)
    return {name: float(np.median(seconds)) for name, seconds in samples.items()}


def process_costs(function, repeats: int) -> dict:
    """This process's CPU milliseconds (all threads) and minor page faults per call of `function()`, after one
    warm-up call. CPU time stays comparable between cases while other processes load the machine, when wall
    time does not; a call whose output is a fresh allocation too large for the allocator to reuse faults in
    every page of it anew."""
    function()
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(repeats):
        function()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "cpu_ms": round(1e3 * cpu / repeats, 3),
        "minor_faults": (after.ru_minflt - before.ru_minflt) / repeats,
    }


def timed(function, repeats: int) -> float:
    """Median seconds per call of `function()`, which must block until its result is ready."""
    return timed_in_turn({"only": function}, repeats)["only"]


def sample_batch(agent, replay, batch_size: int) -> dict:
    """One offline batch of the agent's sample length, as its update reads it."""
    config = agent.config
    every_next = fused.reads_every_next(agent)
    return replay.sample(
        jax.random.PRNGKey(0), batch_size, config.sample_length, config.discount, False, every_next
    )


def compiled_flops(function, *args) -> float:
    """XLA's estimate of the floating-point operations of `function(*args)`, compiled (after XLA's own
    passes, common-subexpression elimination among them)."""
    analysis = jax.jit(function).lower(*args).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis.get("flops", float("nan")))


def update_flops(agent, replay, batch_size: int) -> float:
    """XLA's estimate of the floating-point operations of one update."""
    return compiled_flops(lambda a, b: a.update(b), agent, sample_batch(agent, replay, batch_size))


def convolutions(jaxpr) -> list:
    """The convolution equations a jaxpr traces, inside its sub-jaxprs (jit, scan, cond, custom gradients)
    too: what an agent's code asks for before XLA removes repeated work, so encoding twice shows even where
    XLA would merge the copies."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            found.append(eqn)
        for param in eqn.params.values():
            for inner in param if isinstance(param, tuple | list) else (param,):
                if hasattr(inner, "eqns") or hasattr(inner, "jaxpr"):
                    found += convolutions(getattr(inner, "jaxpr", inner))
    return found


def update_cost(agent, replay, batch_size: int) -> dict:
    """XLA's GFLOP (4 significant digits) of one compiled update and of one action selection for a batch of
    observations, and the convolutions the update traces."""
    batch = sample_batch(agent, replay, batch_size)
    update, act = (lambda a, b: a.update(b)), (lambda a, o, k: a.sample_actions(o, k))
    act_flops = compiled_flops(act, agent, batch["observations"], jax.random.PRNGKey(1))
    return {
        "gflop_per_update": float(f"{compiled_flops(update, agent, batch) / 1e9:.4g}"),
        "gflop_per_batch_act": float(f"{act_flops / 1e9:.4g}"),
        "update_convolutions": len(convolutions(jax.make_jaxpr(update)(agent, batch).jaxpr)),
    }


def agent_bytes(agent) -> int:
    return sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(agent))


def peak_device_bytes() -> int | None:
    """The process's peak memory so far on its first device, as a GPU's allocator reports it (a CPU reports
    none): the memory a vector needs, where `device_bytes_agents` is only what its agents hold."""
    stats = jax.devices()[0].memory_stats()
    return None if stats is None else stats.get("peak_bytes_in_use")


def matmul_gflop_per_s(rows: int, width: int, chain: int = 200) -> float:
    """The device's rate on a chain of (rows, width) @ (width, width) matmuls, an update's bulk shape: the
    ceiling its GFLOP/s is read against (each product feeds the next, so XLA cannot hoist any out)."""
    x = jax.random.normal(jax.random.PRNGKey(0), (rows, width))
    w = jax.random.normal(jax.random.PRNGKey(1), (width, width)) / width
    chained = jax.jit(lambda x, w: jax.lax.fori_loop(0, chain, lambda _, y: y @ w, x))
    seconds = timed(lambda: jax.block_until_ready(chained(x, w)), 3)
    return 2 * rows * width * width * chain / seconds / 1e9
