"""Goal-conditioned chunk batches (DQC's setting, spec dqc.md "Batch: goals, chunks, rewards").

Each row relabels a dataset chunk with a goal: for a start t whose trajectory ends at transition f = f(t)
(the last state with an action), a goal index g, a chunk length H and discount gamma:
  n = min(H, f - t), then n = g - t where 0 <= g - t < n   (the backup stops at the goal)
  success = n < H;  backup_rewards = gamma^n * success;  backup_masks = 1 - success
  actions[k] = a_{min(t+k, f)};  valid[k] = t + k <= f
  observations = s_t (+) oracle_reps[g];  backup_observations = s_{t+n} (+) oracle_reps[g]
The goal is the current state with probability p_current (0.2), else a future state of the same trajectory
with probability p_future / (1 - p_current) (0.5 / 0.8), uniform over [min(t+1, f), f] by rounding, else a
random start. As in the reference code, starts (and random goals) are drawn uniformly among the t with
t + H <= f, so the whole chunk and every bootstrap state lie in the trajectory; the clipping above still
defines the batch for any t. Everything here is pure and jittable.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from buffers.store import TransitionStore, from_dataset

P_CURRENT, P_FUTURE, P_RANDOM = 0.2, 0.5, 0.3


class GoalStore(flax.struct.PyTreeNode):
    """Offline data with goal representations, on the device.

    store: the transitions (states kept once; rewards and masks unused); oracle_reps: (num, goal_dim), the
    goal representation of each transition's state s_t; finals: (num,) int32, f(t), the last transition of
    t's trajectory; trajectory_firsts, trajectory_finals: (trajectories,) int32, each trajectory's first and
    last transition.
    """

    store: TransitionStore
    oracle_reps: jax.Array
    finals: jax.Array
    trajectory_firsts: jax.Array
    trajectory_finals: jax.Array

    def states(self, indices: jax.Array) -> jax.Array:
        """s_i of transitions `indices`: (..., obs_dim)."""
        return self.store.observations[self.store.obs_rows[indices] % self.store.obs_capacity]


def goal_store(dataset: dict) -> GoalStore:
    """A GoalStore of a dataset with observations, actions, terminals, next_observations and oracle_reps
    (one row per transition); `terminals[t] = 1` ends a trajectory, and the last transition ends one."""
    num = len(dataset["observations"])
    oracle_reps = np.asarray(dataset["oracle_reps"], np.float32)
    if oracle_reps.ndim != 2 or len(oracle_reps) != num:
        raise ValueError(
            f"dataset 'oracle_reps' has shape {oracle_reps.shape}, expected ({num}, goal_dim): one goal "
            "representation per transition"
        )
    terminals = np.asarray(dataset["terminals"]).astype(bool).copy()
    terminals[-1] = True
    ends = np.flatnonzero(terminals)
    store = from_dataset(
        {
            "observations": dataset["observations"],
            "actions": dataset["actions"],
            "next_observations": dataset["next_observations"],
            "terminals": terminals,
            "rewards": np.zeros(num, np.float32),
            "masks": np.ones(num, np.float32),
        }
    )
    return GoalStore(
        store=store,
        oracle_reps=jnp.asarray(oracle_reps),
        finals=jnp.asarray(ends[np.searchsorted(ends, np.arange(num))], jnp.int32),
        trajectory_firsts=jnp.asarray(np.concatenate([[0], ends[:-1] + 1]), jnp.int32),
        trajectory_finals=jnp.asarray(ends, jnp.int32),
    )


def sample_starts(data: GoalStore, key: jax.Array, batch_size: int, chunk_length: int) -> jax.Array:
    """Uniform over the transitions t with t + chunk_length <= f(t): (batch_size,) int32.

    Every trajectory must be longer than chunk_length transitions for its starts to count; with none, all
    rows are trajectory 0's first transition.
    """
    counts = jnp.maximum(data.trajectory_finals - data.trajectory_firsts + 1 - chunk_length, 0)
    ends = jnp.cumsum(counts)
    draws = jax.random.randint(key, (batch_size,), 0, jnp.maximum(ends[-1], 1))
    trajectory = jnp.minimum(jnp.searchsorted(ends, draws, side="right"), len(counts) - 1)
    return data.trajectory_firsts[trajectory] + draws - (ends[trajectory] - counts[trajectory])


def sample_goals(
    data: GoalStore,
    key: jax.Array,
    starts: jax.Array,
    chunk_length: int,
    p_current: float = P_CURRENT,
    p_future: float = P_FUTURE,
) -> jax.Array:
    """Goal indices for `starts`: current, future in the same trajectory, or a random start (module doc)."""
    random_key, future_key, pick_key, current_key = jax.random.split(key, 4)
    finals = data.finals[starts]
    low = jnp.minimum(starts + 1, finals)
    # round(low * u + f * (1 - u)) written as an offset from low, exact for any dataset size in float32
    distances = jax.random.uniform(future_key, starts.shape)
    future = low + jnp.round((finals - low) * (1.0 - distances)).astype(jnp.int32)
    random = sample_starts(data, random_key, starts.shape[0], chunk_length)
    goals = jnp.where(
        jax.random.uniform(pick_key, starts.shape) < p_future / (1.0 - p_current), future, random
    )
    return jnp.where(jax.random.uniform(current_key, starts.shape) < p_current, starts, goals)


def gather_goal_chunks(
    data: GoalStore, starts: jax.Array, goals: jax.Array, chunk_length: int, discount: float
) -> dict:
    """The goal-relabelled chunks of `starts` toward `goals` (both (batch,) transition indices).

    Returns observations (batch, obs_dim + goal_dim), actions (batch, chunk_length, action_dim), valid
    (batch, chunk_length), backup_lengths (batch,) int32, backup_rewards, backup_masks (batch,) and
    backup_observations (batch, obs_dim + goal_dim).
    """
    finals = data.finals[starts]
    lengths = jnp.minimum(chunk_length, finals - starts)
    to_goal = goals - starts
    lengths = jnp.where((to_goal >= 0) & (to_goal < lengths), to_goal, lengths)
    success = (lengths < chunk_length).astype(jnp.float32)
    steps = starts[:, None] + jnp.arange(chunk_length)
    goal_reps = data.oracle_reps[goals]
    return {
        "observations": jnp.concatenate([data.states(starts), goal_reps], axis=-1),
        "actions": data.store.actions[jnp.minimum(steps, finals[:, None])],
        "valid": (steps <= finals[:, None]).astype(jnp.float32),
        "backup_lengths": lengths.astype(jnp.int32),
        "backup_rewards": discount ** lengths.astype(jnp.float32) * success,
        "backup_masks": 1.0 - success,
        "backup_observations": jnp.concatenate([data.states(starts + lengths), goal_reps], axis=-1),
    }


class GoalReplay(flax.struct.PyTreeNode):
    """The replay of the offline goal-conditioned setting, with buffers.Replay's `sample` interface."""

    data: GoalStore
    p_current: float = flax.struct.field(pytree_node=False, default=P_CURRENT)
    p_future: float = flax.struct.field(pytree_node=False, default=P_FUTURE)

    def run_part(self) -> tuple:
        """Nothing is a run's own: the runs of a vector share the dataset (offline only)."""
        return ()

    def with_run_part(self, part: tuple) -> GoalReplay:
        return self

    def sample(
        self,
        key: jax.Array,
        batch_size: int,
        chunk_length: int,
        discount: float,
        online: bool,
        every_next: bool = True,
    ) -> dict:
        """A goal-relabelled chunk batch (jittable); the setting is offline, so `online` must be False.
        `every_next` asks nothing here: a goal chunk has one next state, its backup observation."""
        if online:
            raise ValueError("goal-conditioned replay holds the offline dataset only: expected online=False")
        start_key, goal_key = jax.random.split(key)
        starts = sample_starts(self.data, start_key, batch_size, chunk_length)
        goals = sample_goals(self.data, goal_key, starts, chunk_length, self.p_current, self.p_future)
        return gather_goal_chunks(self.data, starts, goals, chunk_length, discount)


def make_goal_replay(dataset: dict) -> GoalReplay:
    """The goal-conditioned replay of an oraclerep dataset (envs/goal_conditioned.py)."""
    return GoalReplay(goal_store(dataset))
