"""The local devices a vector of runs trains on: the run axis sharded over a one-axis mesh, the offline data
replicated, so one process trains a whole table across a node's GPUs."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def select(setting, num_runs: int) -> list:
    """`devices=all`: the most local devices that the vector's size divides (a 3-run vector on 2 GPUs uses
    one); `devices=N`: exactly the first N, which must divide the vector's size (no padding)."""
    local = jax.local_devices()
    if setting == "all":
        return local[: max(n for n in range(1, len(local) + 1) if num_runs % n == 0)]
    if not isinstance(setting, int) or not 1 <= setting <= len(local):
        raise ValueError(
            f"invalid setting devices={setting!r}: expected all or an integer in [1, {len(local)}]"
        )
    if num_runs % setting:
        raise ValueError(
            f"invalid setting devices={setting}: a vector of {num_runs} runs does not split evenly over "
            f"{setting} devices; give a number of devices that divides {num_runs}, or devices=all"
        )
    return local[:setting]


class Placement:
    """Where a vector's arrays live: those with a leading run axis split over the devices, the rest on all."""

    def __init__(self, devices: list):
        mesh = Mesh(np.asarray(devices), ("runs",))
        self.devices = devices
        self.by_run = NamedSharding(mesh, PartitionSpec("runs"))
        self.everywhere = NamedSharding(mesh, PartitionSpec())

    def runs(self, tree):
        return jax.device_put(tree, self.by_run)

    def replicated(self, tree):
        return jax.device_put(tree, self.everywhere)

    def replay(self, replay):
        """The shared (offline) part on every device, each run's own part on its device."""
        return self.replicated(replay).with_run_part(self.runs(replay.run_part()))
