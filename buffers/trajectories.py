"""Whole trajectories for sequence models (RADT, DT): context windows with returns-to-go, on the device.

Trajectories sit in fixed-length slots, zero-padded past their length. A window of K steps starts at a step
drawn uniformly over all stored steps (so trajectories are drawn in proportion to their length, as in DT and
RADT) and runs for K steps or to the trajectory's end; steps past the end are padding (valid = 0, zeros).

OGBench evaluation episodes end on success while dataset trajectories run on past it, so each dataset
trajectory is cut after its first success (the first transition with masks = 0): the returns-to-go
R_t = sum_{j >= t} r_j are then what an evaluation episode from s_t could still collect.

The online replay of Online DT has the same layout. It is seeded with the highest-return dataset trajectories
in ascending order of return and written in ring order, so the worst seeds leave first, then the oldest
trajectories. Returns-to-go of inserted trajectories come from their real rewards (hindsight relabelling).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


class TrajectoryStore(flax.struct.PyTreeNode):
    """observations: (num_slots, max_length, obs_dim); actions: (num_slots, max_length, action_dim);
    returns_to_go: (num_slots, max_length); lengths: (num_slots,) int32, 0 for an empty slot;
    count: () int32 trajectories ever written, the next one goes to slot count % num_slots.
    """

    observations: jax.Array
    actions: jax.Array
    returns_to_go: jax.Array
    lengths: jax.Array
    count: jax.Array

    @property
    def num_slots(self) -> int:
        return self.lengths.shape[0]

    @property
    def max_length(self) -> int:
        return self.actions.shape[1]


def trajectory_bounds(dataset: dict) -> list[tuple[int, int]]:
    """[start, stop) of each stored trajectory, cut after its first success.

    `terminals[t] = 1` marks the last transition of a stored trajectory (the last transition always ends one);
    `masks[t] = 0` marks a success.
    """
    terminals = np.asarray(dataset["terminals"]) > 0.5
    successes = np.asarray(dataset["masks"]) < 0.5
    ends = np.flatnonzero(terminals[:-1]) + 1
    bounds = []
    starts, stops = np.concatenate([[0], ends]), np.concatenate([ends, [len(terminals)]])
    for start, stop in zip(starts, stops, strict=True):
        first_success = np.flatnonzero(successes[start:stop])
        bounds.append((int(start), int(start + first_success[0] + 1 if len(first_success) else stop)))
    return bounds


def observation_statistics(dataset: dict) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (obs_dim,) of the dataset's states, the normalisation of DT and RADT."""
    observations = np.asarray(dataset["observations"], np.float64)
    return observations.mean(0).astype(np.float32), (observations.std(0) + 1e-6).astype(np.float32)


def pad_trajectory(observations, actions, rewards, max_length: int) -> dict:
    """One trajectory (length, ...) as the zero-padded arrays that `insert` takes (host side)."""
    length = len(actions)
    if length > max_length:
        raise ValueError(f"a trajectory of {length} steps does not fit slots of max_length={max_length}")

    def padded(values):
        values = np.asarray(values, np.float32)
        out = np.zeros((max_length,) + values.shape[1:], np.float32)
        out[:length] = values
        return out

    return {
        "observations": padded(observations),
        "actions": padded(actions),
        "rewards": padded(rewards),
        "length": np.int32(length),
    }


def from_dataset(dataset: dict, episode_limit: int = 0) -> TrajectoryStore:
    """Every (cut) trajectory of an OGBench-style dataset, in slots as long as the longest of them or as
    `episode_limit`, whichever is more, so that online episodes fit too."""
    bounds = trajectory_bounds(dataset)
    max_length = max(episode_limit, *(stop - start for start, stop in bounds))
    rows = [
        pad_trajectory(
            dataset["observations"][start:stop],
            dataset["actions"][start:stop],
            dataset["rewards"][start:stop],
            max_length,
        )
        for start, stop in bounds
    ]
    stacked = {key: np.stack([row[key] for row in rows]) for key in rows[0]}
    rewards = stacked["rewards"]
    return TrajectoryStore(
        observations=jnp.asarray(stacked["observations"]),
        actions=jnp.asarray(stacked["actions"]),
        returns_to_go=jnp.asarray(np.cumsum(rewards[:, ::-1], axis=1)[:, ::-1].copy()),
        lengths=jnp.asarray(stacked["length"]),
        count=jnp.asarray(len(rows), jnp.int32),
    )


def trajectory_returns(store: TrajectoryStore) -> np.ndarray:
    """The return R_0 of each stored trajectory (host side)."""
    lengths = np.asarray(store.lengths)
    return np.asarray(store.returns_to_go[:, 0])[lengths > 0]


def best(store: TrajectoryStore, num_slots: int) -> TrajectoryStore:
    """A store of `num_slots` slots seeded with the highest-return trajectories of `store`, in ascending order
    of return; with fewer trajectories than slots the empty slots are written first."""
    lengths = np.asarray(store.lengths)
    returns = np.asarray(store.returns_to_go[:, 0])
    ascending = np.argsort(returns, kind="stable")
    order = ascending[lengths[ascending] > 0][-num_slots:]

    def seeded(values):
        return jnp.zeros((num_slots,) + values.shape[1:], values.dtype).at[: len(order)].set(values[order])

    return TrajectoryStore(
        observations=seeded(store.observations),
        actions=seeded(store.actions),
        returns_to_go=seeded(store.returns_to_go),
        lengths=seeded(store.lengths),
        count=jnp.asarray(len(order), jnp.int32),
    )


def insert(store: TrajectoryStore, trajectory: dict) -> TrajectoryStore:
    """Write one trajectory from `pad_trajectory` over the oldest slot, its returns-to-go from its rewards
    (jittable)."""
    slot = store.count % store.num_slots
    rewards = trajectory["rewards"] * (jnp.arange(store.max_length) < trajectory["length"])
    return store.replace(
        observations=store.observations.at[slot].set(trajectory["observations"]),
        actions=store.actions.at[slot].set(trajectory["actions"]),
        returns_to_go=store.returns_to_go.at[slot].set(jnp.cumsum(rewards[::-1])[::-1]),
        lengths=store.lengths.at[slot].set(trajectory["length"]),
        count=store.count + 1,
    )


def gather_windows(store: TrajectoryStore, slots: jax.Array, starts: jax.Array, context_length: int) -> dict:
    """Windows of `context_length` steps from step `starts` of trajectory `slots` (both (batch,)).

    Returns observations (batch, K, obs_dim), actions (batch, K, action_dim), returns_to_go (batch, K),
    timesteps (batch, K) int32 (the step's index in its trajectory) and valid (batch, K), 0 past the end.
    """
    steps = starts[:, None] + jnp.arange(context_length)
    valid = steps < store.lengths[slots][:, None]
    index = jnp.minimum(steps, store.max_length - 1)

    def take(values):
        values = values[slots[:, None], index]
        return jnp.where(valid.reshape(valid.shape + (1,) * (values.ndim - 2)), values, 0.0)

    return {
        "observations": take(store.observations),
        "actions": take(store.actions),
        "returns_to_go": take(store.returns_to_go),
        "timesteps": jnp.where(valid, steps, 0).astype(jnp.int32),
        "valid": valid.astype(jnp.float32),
    }


def sample_windows(store: TrajectoryStore, key: jax.Array, batch_size: int, context_length: int) -> dict:
    """Windows starting at steps drawn uniformly over all stored steps (jittable)."""
    slot_key, start_key = jax.random.split(key)
    slots = jax.random.categorical(slot_key, jnp.log(store.lengths.astype(jnp.float32)), shape=(batch_size,))
    starts = jax.random.randint(start_key, (batch_size,), 0, store.lengths[slots])
    return gather_windows(store, slots, starts, context_length)


class TrajectoryReplay(flax.struct.PyTreeNode):
    """offline: every dataset trajectory; online: the Online DT replay, seeded with the best of them."""

    offline: TrajectoryStore
    online: TrajectoryStore
    context_length: int = flax.struct.field(pytree_node=False)

    def sample(
        self,
        key: jax.Array,
        batch_size: int,
        chunk_length: int,
        discount: float,
        online: bool,
        every_next: bool = True,
    ) -> dict:
        """Context windows for an offline or online update (jittable). The signature is that of
        buffers.Replay.sample, so launch.fused.fused_updates drives sequence agents too; chunk_length,
        discount and every_next do not apply to windows."""
        return sample_windows(self.online if online else self.offline, key, batch_size, self.context_length)

    def run_part(self) -> TrajectoryReplay:
        """Every part is the run's own (a sequence agent trains as a vector of one)."""
        return self

    def with_run_part(self, part: TrajectoryReplay) -> TrajectoryReplay:
        return part

    def insert(self, trajectory: dict) -> TrajectoryReplay:
        """Add one trajectory from `pad_trajectory` to the online replay (jittable)."""
        return self.replace(online=insert(self.online, trajectory))


def make_trajectory_replay(
    dataset: dict, context_length: int, replay_trajectories: int, episode_limit: int = 0
) -> TrajectoryReplay:
    """A sequence agent's replay: all dataset trajectories and an online replay of `replay_trajectories`,
    with room for online episodes of `episode_limit` steps."""
    offline = from_dataset(dataset, episode_limit)
    return TrajectoryReplay(offline, best(offline, replay_trajectories), context_length)
