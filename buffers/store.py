"""Device-resident transition storage that keeps each state once.

A transition t is (s_t, a_t, r_t, m_t, d_t, s'_t). Consecutive transitions of a trajectory share states
(s'_t = s_{t+1}), so states are stored once in `observations` and each transition keeps the row of its
state, `obs_rows[t]`; its next state sits in the following row. A trajectory of T transitions therefore
takes T + 1 observation rows instead of 2T, which is what makes a 1M-transition OGBench dataset fit in
about half the memory of an (observations, next_observations) layout.

The same structure is the online replay ring buffer: transitions and observation rows are both rings,
`obs_rows` holds global (unwrapped) row numbers, and `oldest` tracks the oldest transition whose state
rows have not been overwritten yet, so a wrapped buffer never hands out a stale state.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from envs.observations import observation_array


class TransitionStore(flax.struct.PyTreeNode):
    """Flat transition array on the device.

    observations: (obs_capacity, *obs_shape) states, ring-indexed by global row % obs_capacity: float32
    vectors, or uint8 (64, 64, 3) frames of a visual env, each frame stored once (`observation_array`).
    obs_rows: (capacity,) int32 global row of s_t for each transition slot.
    actions: (capacity, action_dim); rewards: (tasks, capacity) float32;
    masks: (tasks, capacity) bool, 1 - true terminal;
    terminals: (capacity,) bool, last transition of a trajectory.
    The tasks of one OGBench domain share states and actions and differ only in rewards and masks
    (single-task relabelling), so a vector of runs over tasks stores the dataset once and a row per task.
    count: transitions ever inserted; oldest: global index of the oldest live transition;
    rows_written: observation rows ever written.
    fields: {name: (capacity, ...)} what an agent chose beside each action, recorded online (a skill's
    latent); empty for every store of an agent that declares none, so its memory is the plain layout's.
    frame_stack: K > 1 makes the samplers hand out each state as its last K frames concatenated on the
    last axis, formed by index (buffers/chunks.py); nothing stacked is stored.
    """

    observations: jax.Array
    obs_rows: jax.Array
    actions: jax.Array
    rewards: jax.Array
    masks: jax.Array
    terminals: jax.Array
    count: jax.Array
    oldest: jax.Array
    rows_written: jax.Array
    fields: dict = flax.struct.field(default_factory=dict)
    frame_stack: int = flax.struct.field(pytree_node=False, default=1)

    @property
    def capacity(self) -> int:
        return self.actions.shape[0]

    @property
    def obs_capacity(self) -> int:
        return self.observations.shape[0]

    @property
    def size(self) -> jax.Array:
        """Live transitions, in global order `oldest .. count - 1`."""
        return self.count - self.oldest

    def slot(self, index: jax.Array) -> jax.Array:
        """Array slot of a global transition index."""
        return index % self.capacity


def empty(
    obs_dim: int | tuple[int, ...],
    action_dim: int,
    capacity: int,
    max_episodes: int | None = None,
    obs_dtype=jnp.float32,
    frame_stack: int = 1,
    fields: dict[str, tuple[int, ...]] | None = None,
) -> TransitionStore:
    """An empty ring buffer for `capacity` transitions of observations shaped `obs_dim` (an int for vectors),
    with the per-transition `fields` {name: shape} an agent records beside its actions.

    `max_episodes` extra observation rows hold the final state of each stored episode; with fewer rows
    than episodes the buffer still works but holds fewer than `capacity` transitions once it wraps.
    """
    if capacity < 1:
        raise ValueError(f"buffer capacity must be >= 1, got {capacity}")
    max_episodes = max(1, capacity // 50) if max_episodes is None else max_episodes
    return TransitionStore(
        observations=jnp.zeros((capacity + max_episodes, *np.atleast_1d(obs_dim)), obs_dtype),
        obs_rows=jnp.zeros((capacity,), jnp.int32),
        actions=jnp.zeros((capacity, action_dim), jnp.float32),
        rewards=jnp.zeros((1, capacity), jnp.float32),
        masks=jnp.zeros((1, capacity), bool),
        terminals=jnp.ones((capacity,), bool),
        count=jnp.zeros((), jnp.int32),
        oldest=jnp.zeros((), jnp.int32),  # separate buffers: the train loop donates the store
        rows_written=jnp.zeros((), jnp.int32),
        fields={name: jnp.zeros((capacity, *shape), jnp.float32) for name, shape in (fields or {}).items()},
        frame_stack=frame_stack,
    )


def field_shapes(store: TransitionStore) -> dict[str, tuple[int, ...]]:
    """{name: shape of one transition's value} of the store's recorded fields (leading run axes ignored)."""
    return {name: value.shape[store.obs_rows.ndim :] for name, value in store.fields.items()}


def empty_like(
    store: TransitionStore, capacity: int, fields: dict[str, tuple[int, ...]] | None = None
) -> TransitionStore:
    """An empty ring buffer for `capacity` transitions of `store`'s observation shape, dtype, frame stack
    and recorded fields (`fields` when given; `store` may carry leading run axes)."""
    return empty(
        store.observations.shape[store.obs_rows.ndim :],
        store.actions.shape[-1],
        capacity,
        obs_dtype=store.observations.dtype,
        frame_stack=store.frame_stack,
        fields=field_shapes(store) if fields is None else fields,
    )


def _check_next_observations(dataset: dict, terminals: np.ndarray) -> None:
    """`next_observations` from OGBench's loader must equal the following state inside each trajectory."""
    inner = ~terminals[:-1]
    if not np.array_equal(dataset["next_observations"][:-1][inner], dataset["observations"][1:][inner]):
        differs = (dataset["next_observations"][:-1] != dataset["observations"][1:]).reshape(len(inner), -1)
        bad = int(np.flatnonzero(inner & np.any(differs, axis=-1))[0])
        raise ValueError(
            f"dataset next_observations[{bad}] differs from observations[{bad + 1}] although transition "
            f"{bad} is not the last of its trajectory (terminals = 0): expected one flat list of trajectories"
        )


def host_layout(dataset: dict) -> dict[str, np.ndarray]:
    """The store's arrays, on the host, for an OGBench-style dataset dict (observations, actions, rewards,
    masks, terminals, next_observations): observations (transitions + trajectories, obs_dim) with one row
    per state, obs_rows, actions, rewards and masks (tasks, transitions), terminals.

    `rewards` and `masks` are (num,) or (tasks, num): one row per task labelling of the same transitions.
    `terminals[t] = 1` marks the last transition of a stored trajectory. `next_observations` is checked
    against the next state, then dropped; only the final state of each trajectory is kept from it.
    """
    observations = observation_array(dataset["observations"])
    terminals = np.asarray(dataset["terminals"]).astype(bool)
    rewards = np.atleast_2d(np.asarray(dataset["rewards"], np.float32))
    masks = np.atleast_2d(np.asarray(dataset["masks"])) > 0.5
    num = len(observations)
    for key, rows in (
        ("actions", len(dataset["actions"])),
        ("terminals", len(terminals)),
        ("rewards", rewards.shape[-1]),
        ("masks", masks.shape[-1]),
    ):
        if rows != num:
            raise ValueError(f"dataset key '{key}' has {rows} rows, observations has {num}")
    if num == 0:
        raise ValueError("dataset is empty")
    if "next_observations" not in dataset:
        raise ValueError("dataset needs next_observations: the final state of each trajectory comes from it")
    if not terminals[-1]:
        terminals = terminals.copy()
        terminals[-1] = True  # the final state is known from next_observations; close the trajectory there
    _check_next_observations(dataset, terminals)

    ends = np.flatnonzero(terminals)
    # Row of s_t: t plus one extra row for each trajectory that ended before t.
    obs_rows = np.arange(num) + np.searchsorted(ends, np.arange(num), side="left")
    final_rows = ends + np.arange(1, len(ends) + 1)
    rows = np.zeros((num + len(ends), *observations.shape[1:]), observations.dtype)
    rows[obs_rows] = observations
    rows[final_rows] = np.asarray(dataset["next_observations"])[ends]
    return {
        "observations": rows,
        "obs_rows": obs_rows.astype(np.int32),
        "actions": np.asarray(dataset["actions"], np.float32),
        "rewards": rewards,
        "masks": masks,
        "terminals": terminals,
    }


def from_dataset(dataset: dict, frame_stack: int = 1) -> TransitionStore:
    """Store holding an OGBench-style dataset dict (see `host_layout`), sampled as stacks of
    `frame_stack` frames."""
    arrays = host_layout(dataset)
    num, rows = len(arrays["obs_rows"]), len(arrays["observations"])
    return TransitionStore(
        **{key: jnp.asarray(value) for key, value in arrays.items()},
        count=jnp.asarray(num, jnp.int32),
        oldest=jnp.zeros((), jnp.int32),
        rows_written=jnp.asarray(rows, jnp.int32),
        frame_stack=frame_stack,
    )


def nbytes(store: TransitionStore) -> int:
    """Device bytes held by the store's arrays."""
    return sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(store))


def bytes_per_transition(store: TransitionStore) -> float:
    """Device bytes per stored transition: one state row (plus each episode's final row), the action and
    the small per-transition fields; frames stacks and next states cost nothing (formed by index)."""
    return nbytes(store) / max(int(store.size), 1)


def insert(store: TransitionStore, transition: dict) -> TransitionStore:
    """Append one transition (jittable). `transition`: observations, actions, rewards, masks, terminals,
    next_observations and each of the store's recorded fields, each without a batch axis. `terminals` = 1
    ends the episode (success or time-out).

    Observations may be frame stacks (the K frames an agent acts on, on the last axis, oldest first): only
    the newest frame is stored, since the samplers form the stack again by index.
    """
    channels = store.observations.shape[-1]
    transition = {
        **transition,
        "observations": transition["observations"][..., -channels:],
        "next_observations": transition["next_observations"][..., -channels:],
    }
    previous_ended = store.terminals[store.slot(store.count - 1)] | (store.count == 0)
    # A new episode writes its first state to a fresh row; otherwise s_t is the previous s'.
    row = jnp.where(previous_ended, store.rows_written, store.rows_written - 1)
    observations = store.observations.at[row % store.obs_capacity].set(transition["observations"])
    observations = observations.at[(row + 1) % store.obs_capacity].set(transition["next_observations"])
    slot = store.slot(store.count)
    count = store.count + 1
    rows_written = row + 2
    store = store.replace(
        observations=observations,
        obs_rows=store.obs_rows.at[slot].set(row),
        actions=store.actions.at[slot].set(transition["actions"]),
        rewards=store.rewards.at[:, slot].set(transition["rewards"]),
        masks=store.masks.at[:, slot].set(transition["masks"] > 0.5),
        terminals=store.terminals.at[slot].set(transition["terminals"] > 0.5),
        count=count,
        rows_written=rows_written,
        fields={name: value.at[slot].set(transition[name]) for name, value in store.fields.items()},
    )
    return _drop_overwritten(store)


def _drop_overwritten(store: TransitionStore) -> TransitionStore:
    """Advance `oldest` past transitions whose slot or state rows were reused."""
    oldest = jnp.maximum(store.oldest, store.count - store.capacity)
    first_live_row = store.rows_written - store.obs_capacity

    def stale(index):
        return (index < store.count) & (store.obs_rows[store.slot(index)] < first_live_row)

    oldest = jax.lax.while_loop(stale, lambda index: index + 1, oldest)
    return store.replace(oldest=oldest)


def insert_many(store: TransitionStore, transitions: dict) -> TransitionStore:
    """Append transitions with a leading time axis, in order (jittable)."""
    return jax.lax.scan(lambda s, tr: (insert(s, tr), None), store, transitions)[0]


def grow(store: TransitionStore, larger: TransitionStore) -> TransitionStore:
    """`store`'s live transitions and state rows moved into the empty, larger store `larger`, each at the
    slot of its global index there, so that sampling and inserting go on as if `larger` had been used from
    the start (a resumed run whose online_steps grew; jittable)."""
    index = store.count - store.capacity + jnp.arange(store.capacity)  # the slots' global indices
    into = jnp.where(index >= store.oldest, larger.slot(index), larger.capacity)  # out of range: dropped
    row = store.rows_written - store.obs_capacity + jnp.arange(store.obs_capacity)
    row_into = jnp.where(row >= 0, row % larger.obs_capacity, larger.obs_capacity)
    slot, row_slot = store.slot(index), row % store.obs_capacity

    def moved(new, old, axis: int = 0):
        if axis:
            return new.at[:, into].set(old[:, slot], mode="drop")
        return new.at[into].set(old[slot], mode="drop")

    return larger.replace(
        observations=larger.observations.at[row_into].set(store.observations[row_slot], mode="drop"),
        obs_rows=moved(larger.obs_rows, store.obs_rows),
        actions=moved(larger.actions, store.actions),
        rewards=moved(larger.rewards, store.rewards, axis=1),
        masks=moved(larger.masks, store.masks, axis=1),
        terminals=moved(larger.terminals, store.terminals),
        fields={name: moved(larger.fields[name], value) for name, value in store.fields.items()},
        count=store.count,
        oldest=store.oldest,
        rows_written=store.rows_written,
    )
