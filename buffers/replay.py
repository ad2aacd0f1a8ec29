"""The replay used by the train loop: the offline data, shared by every run of a vector, and each run's own
online data.

`offline_ratio = None` is the reference's offline-to-online setting: online transitions join the offline
data in one pool that is sampled uniformly (`chunks.sample_pooled`). A number in [0, 1] draws that fraction of
every batch from the offline data (0.5 is RLPD's symmetric sampling). Either way the dataset is stored once,
however many runs train on it; a run's `Segment` says which part of it is its dataset and which reward row is
its task.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from buffers import chunks, store
from buffers.chunks import Segment


class Replay(flax.struct.PyTreeNode):
    """The replay of one run, as the fused update sees it inside `jax.vmap` over the runs of a vector.

    offline: the shared offline store; online: this run's online ring buffer; segment: this run's part of
    the offline store; offline_ratio: None for every run of a vector (pooled sampling) or each run's own.
    """

    offline: store.TransitionStore
    online: store.TransitionStore
    segment: Segment
    offline_ratio: jax.Array | None  # this run's share of offline rows in an online batch; None: pooled

    def run_part(self) -> tuple:
        """What each run owns (a leading run axis outside `jax.vmap`); the offline store is shared."""
        return self.online, self.segment, self.offline_ratio

    def with_run_part(self, part: tuple) -> Replay:
        online, segment, offline_ratio = part
        return self.replace(online=online, segment=segment, offline_ratio=offline_ratio)

    def of_run(self, index: int) -> Replay:
        """Run `index`'s replay, taken out of a vector's (outside `jax.vmap`)."""
        return self.with_run_part(jax.tree_util.tree_map(lambda leaf: leaf[index], self.run_part()))

    def recording(self, fields: dict[str, tuple[int, ...]]) -> Replay:
        """This replay, still empty online, with each run's online store recording `fields` {name: shape}
        beside its actions (what an agent chose: agents/__init__.py). The offline data has none."""
        if not fields:
            return self
        num_runs, capacity = self.online.actions.shape[:2]
        online = store.empty_like(self.online, capacity, fields)
        online = jax.tree_util.tree_map(
            lambda leaf: jnp.broadcast_to(leaf[None], (num_runs,) + leaf.shape), online
        )
        return self.replace(online=online)

    def insert(self, transitions: dict) -> Replay:
        """Append online transitions with a leading time axis (jittable)."""
        return self.replace(online=store.insert_many(self.online, transitions))

    def sample(
        self,
        key: jax.Array,
        batch_size: int,
        chunk_length: int,
        discount: float,
        online: bool,
        every_next: bool = True,
    ) -> dict:
        """A chunk batch for an offline (online=False) or online update (jittable); with every_next=False
        its next_observations are the last step's only (`chunks.gather_chunks`)."""
        args = (key, batch_size, chunk_length, discount)
        if not online:
            return chunks.sample_chunks(self.offline, *args, self.segment, every_next)
        if self.offline_ratio is None:
            return chunks.sample_pooled(self.offline, self.online, *args, self.segment, every_next)
        return chunks.sample_mixed(
            self.offline, self.online, *args, self.offline_ratio, self.segment, every_next
        )


def concatenate(datasets: Sequence[dict]) -> tuple[dict, np.ndarray]:
    """One dataset of the given ones back to back (rewards and masks on their last axis) and the index of
    each one's first transition."""
    sizes = [len(dataset["observations"]) for dataset in datasets]
    joined = {
        key: np.concatenate(
            [np.asarray(dataset[key]) for dataset in datasets], axis=-1 if key in ("rewards", "masks") else 0
        )
        for key in datasets[0]
    }
    return joined, np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)


def online_capacity(buffer_size: int, online_steps: int) -> int:
    """Online transitions a run keeps: all of them up to `buffer_size`; the offline data is always kept."""
    return max(1, min(buffer_size, online_steps))


def make_replay(
    datasets: Sequence[dict],
    dataset_index: Sequence[int],
    tasks: Sequence[int],
    buffer_size: int,
    online_steps: int,
    offline_ratios: Sequence[float] | None,
    frame_stack: int = 1,
) -> Replay:
    """The replay of a vector of runs: run i trains on `datasets[dataset_index[i]]` rewarded by row
    `tasks[i]` of its rewards and masks ((tasks, num) arrays, the same rows in every dataset), sampled as
    stacks of `frame_stack` frames (buffers/chunks.py).

    Every array of the result but `offline` has a leading run axis.
    """
    joined, firsts = concatenate(datasets)
    sizes = np.asarray([len(dataset["observations"]) for dataset in datasets], np.int32)
    dataset_index = np.asarray(dataset_index)
    return replay_over(
        store.from_dataset(joined, frame_stack),
        firsts[dataset_index],
        sizes[dataset_index],
        tasks,
        buffer_size,
        online_steps,
        offline_ratios,
    )


def replay_over(
    offline: store.TransitionStore,
    firsts: Sequence[int],
    sizes: Sequence[int],
    tasks: Sequence[int],
    buffer_size: int,
    online_steps: int,
    offline_ratios: Sequence[float] | None,
) -> Replay:
    """The replay of a vector of runs over a shared offline store: run i samples its transitions
    firsts[i] .. firsts[i] + sizes[i] - 1, rewarded by row tasks[i], and has an empty online store."""
    online = store.empty_like(offline, online_capacity(buffer_size, online_steps))
    num_runs = len(tasks)
    segment = Segment(
        first=jnp.asarray(firsts, jnp.int32),
        size=jnp.asarray(sizes, jnp.int32),
        task=jnp.asarray(tasks, jnp.int32),
    )
    online = jax.tree_util.tree_map(
        lambda leaf: jnp.broadcast_to(leaf, (num_runs,) + leaf.shape).copy(), online
    )
    ratios = None if offline_ratios is None else jnp.asarray(offline_ratios, jnp.float32).reshape(num_runs)
    return Replay(offline, online, segment, ratios)
