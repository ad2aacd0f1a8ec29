"""The settings every agent shares, and turning a Hydra agent group into an agent's frozen config."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT", bound="AgentConfig")

# Keys of configs/agent/*.yaml that name the agent rather than configure it.
META_KEYS = ("name", "algorithm")


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """chunk_length: actions per policy query and per critic input; action_chunking = False keeps the
    chunk_length-step return in the target but lets the critic and policy see a single action.
    offline_pretraining = False (the online-only RLPD family) skips the offline phase.
    execution_length: actions of each chunk executed before the policy is queried again (receding horizon);
    None executes the whole chunk."""

    chunk_length: int = 5
    action_chunking: bool = True
    discount: float = 0.99
    offline_pretraining: bool = True
    execution_length: int | None = None

    def policy_dim(self, action_dim: int) -> int:
        """Size of one flat policy output: a whole chunk, or one action without chunking."""
        return action_dim * (self.chunk_length if self.action_chunking else 1)

    @property
    def sample_length(self) -> int:
        """Transitions per sampled chunk: the chunk itself; an agent that also needs the dataset's next action
        (ReBRAC) samples one more."""
        return self.chunk_length

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
            kwargs[key] = tuple(value) if isinstance(value, list | tuple) else value
        return cls(**kwargs)
