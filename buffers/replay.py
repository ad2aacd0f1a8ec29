"""The replay used by the train loop: the offline pool plus where online transitions go.

`offline_ratio = None` is the reference's offline-to-online setting: online transitions are appended
to the offline data in one pool that is sampled uniformly. A number in [0, 1] keeps two stores and draws
that fraction of every batch from the offline one (0.5 is RLPD's symmetric sampling).
"""

from __future__ import annotations

import flax.struct
import jax

from buffers import chunks, store


class Replay(flax.struct.PyTreeNode):
    """offline: the dataset (and, when pooled, the online data after it); online: None when pooled."""

    offline: store.TransitionStore
    online: store.TransitionStore | None
    offline_ratio: float | None = flax.struct.field(pytree_node=False)

    def insert(self, transitions: dict) -> Replay:
        """Append online transitions with a leading time axis (jittable)."""
        if self.online is None:
            return self.replace(offline=store.insert_many(self.offline, transitions))
        return self.replace(online=store.insert_many(self.online, transitions))

    def sample(
        self, key: jax.Array, batch_size: int, chunk_length: int, discount: float, online: bool
    ) -> dict:
        """A chunk batch for an offline (online=False) or online update (jittable)."""
        if not online or self.online is None:
            return chunks.sample_chunks(self.offline, key, batch_size, chunk_length, discount)
        return chunks.sample_mixed(
            self.offline, self.online, key, batch_size, chunk_length, discount, self.offline_ratio
        )


def make_replay(dataset: dict, buffer_size: int, online_steps: int, offline_ratio: float | None) -> Replay:
    """Replay for a run of `online_steps` environment steps after pre-training on `dataset`."""
    num = len(dataset["observations"])
    if offline_ratio is None:
        # The reference sizes the pool max(buffer_size, |D| + 1); online data then replaces the oldest data.
        return Replay(store.from_dataset(dataset, capacity=max(buffer_size, num + 1)), None, None)
    online = store.empty(
        dataset["observations"].shape[-1],
        dataset["actions"].shape[-1],
        max(1, min(buffer_size, online_steps)),
    )
    return Replay(store.from_dataset(dataset), online, float(offline_ratio))
