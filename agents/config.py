"""The settings every agent shares, and turning a Hydra agent group into an agent's frozen config."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import jax

ConfigT = TypeVar("ConfigT", bound="AgentConfig")

# Keys of configs/agent/*.yaml that name the agent rather than configure it; paper_label is the paper's name
# of the method (launch/plot.py --paper draws the published curve of that name).
META_KEYS = ("name", "algorithm", "paper_label")
_SWEEPABLE = "sweepable"


def sweepable(default: Any) -> Any:
    """A config field that may take a different value in each run of a vector: a scalar that changes no
    array shape (`alpha: float = sweepable(300.0)`). It becomes a leaf of the config's pytree."""
    return dataclasses.field(default=default, metadata={_SWEEPABLE: True})


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """chunk_length: actions per policy query and per critic input; action_chunking = False keeps the
    chunk_length-step return in the target but lets the critic and policy see a single action.
    offline_pretraining = False (the online-only RLPD family) skips the offline phase.
    execution_length: actions of each chunk executed before the policy is queried again (receding horizon);
    None executes the whole chunk.
    encoder: None for state vectors; a name of agents.networks.ENCODERS ('impala_small') for pixel
    observations (uint8 (batch, height, width, channels)): every network of the agent then runs its own
    encoder instance on the observations first (agents/networks.py). aug_prob: the probability that an update
    random-crops its batch's pixels (agents/step.py `random_crop`, FQL's p_aug); only image batches are
    cropped. Both are static: a vector's runs share one network shape and one jitted update.

    A config is a pytree: the fields marked `sweepable(...)` (scalars that change no array shape) are its
    leaves and everything else is static. An agent that holds its config as a pytree field and reads these
    values inside its jitted functions can then be stacked with agents of other values and `jax.vmap`-ed:
    each run of a vector sees its own alpha, tau or discount. A subclass that redefines a field marks it
    again.

    rho: None bootstraps from the agent's own reduction of its target ensemble (its q_agg); a number takes
    mean - rho * std over the target critics instead (agents/critic.py `bootstrap`, QAM's pessimistic
    target), for every TD agent whose target is one chunk-level bootstrap. Static: off by default, so no
    agent's numbers change unless it is set.

    PRESETS: what a preset (configs/preset/<name>.yaml) sets in this agent, {preset: {field: value}}, such as
    the sizes of preset=debug's tiny networks: a preset names no agent's fields itself, so it suits them all.
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    TAKES_RHO: ClassVar[bool] = False  # whether the agent's target reads `rho`; others refuse it

    chunk_length: int = 5
    action_chunking: bool = True
    discount: float = sweepable(0.99)
    offline_pretraining: bool = True
    execution_length: int | None = None
    encoder: str | None = None
    aug_prob: float = 0.0
    rho: float | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _register(cls)

    def require_state_vectors(self, reader: str, obs_dim: int | tuple[int, ...]) -> None:
        """One line refusing pixels for an agent whose `reader` (its network) takes state vectors only."""
        if self.encoder is not None or not isinstance(obs_dim, int):
            raise ValueError(
                f"{reader} reads state vectors only: got agent.encoder={self.encoder!r} and observations of "
                f"shape {obs_dim}; use a TD agent with an encoder (e.g. agent=qc_fql) for pixels"
            )

    def policy_dim(self, action_dim: int) -> int:
        """Size of one flat policy output: a whole chunk, or one action without chunking."""
        return action_dim * (self.chunk_length if self.action_chunking else 1)

    @property
    def sample_length(self) -> int:
        """Transitions per sampled chunk: the chunk itself; an agent that also needs the dataset's next action
        (ReBRAC) samples one more."""
        return self.chunk_length

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every field with its default, tuples as lists: the base of the agent's Hydra group
        (agents.register_defaults), so that the dataclass is the one source of each default."""
        return _plain({field.name: field.default for field in dataclasses.fields(cls)})

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        """PRESETS with tuples as lists, for Hydra."""
        return {name: _plain(values) for name, values in cls.PRESETS.items()}

    @classmethod
    def sweepable(cls) -> tuple[str, ...]:
        """The fields of this config that may take a different value in each run of a vector."""
        return tuple(field.name for field in dataclasses.fields(cls) if field.metadata.get(_SWEEPABLE))

    def replace_static(self: ConfigT, **changes) -> ConfigT:
        """A copy with static fields changed and the leaves (possibly stacked arrays) kept; for evaluating a
        trained agent under another static setting (eval.num_samples). No validation: the leaves may be
        traced."""
        leaves, treedef = jax.tree_util.tree_flatten(self)
        copy = jax.tree_util.tree_unflatten(treedef, leaves)
        for name, value in changes.items():
            if name in self.sweepable() or name not in {field.name for field in dataclasses.fields(self)}:
                raise ValueError(f"replace_static: {name!r} is not a static field of {type(self).__name__}")
            object.__setattr__(copy, name, value)
        return copy

    @classmethod
    def from_mapping(cls: type[ConfigT], values: Mapping[str, Any]) -> ConfigT:
        """Build from a Hydra agent group; an unknown key fails with the list of valid ones."""
        fields = {field.name: field for field in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key in META_KEYS:
                continue
            if key not in fields:
                raise ValueError(
                    f"unknown agent setting '{key}' for {cls.__module__}; valid: {sorted(fields)}"
                )
            if isinstance(value, list | tuple):
                value = tuple(value)
            elif key in cls.sweepable() and isinstance(value, int):  # float leaves whatever the YAML says
                value = float(value)
            kwargs[key] = value
        if kwargs.get("rho") is not None and not cls.TAKES_RHO:
            raise ValueError(
                f"agent.rho (the pessimistic target) is for agents with one chunk-level bootstrap, not "
                f"{cls.__module__}; leave it null"
            )
        return cls(**kwargs)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}


def _register(cls: type[AgentConfig]) -> None:
    """Registers `cls` as a pytree of its sweepable fields; the fields are read at flatten time, after the
    dataclass decorator has made them. Unflattening skips __init__: the leaves may be tracers."""

    def flatten(config):
        names = config.sweepable()
        static = tuple(
            (field.name, getattr(config, field.name))
            for field in dataclasses.fields(config)
            if field.name not in names
        )
        return [getattr(config, name) for name in names], (names, static)

    def unflatten(aux, leaves):
        names, static = aux
        config = object.__new__(cls)
        for name, value in (*static, *zip(names, leaves, strict=True)):
            object.__setattr__(config, name, value)
        return config

    jax.tree_util.register_pytree_node(cls, flatten, unflatten)


_register(AgentConfig)
