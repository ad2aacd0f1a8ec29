"""Agents: networks, losses and action selection; no I/O.

Every agent is an immutable pytree with
  create(seed, obs_dim, action_dim, config) -> agent   # obs_dim: an int, or an image's (h, w, c)
  update(batch) -> (agent, info)          # pure; batch from buffers.gather_chunks
  sample_actions(observations, key) -> (batch, steps, action_dim)   # executed open-loop
  eval_actions(observations, key)    # optional: the evaluation policy where it differs (temperature 0)
  online_update(batch) -> (agent, info)   # optional: the online phase's update where it differs (SUPE-GT)
An agent that acts closed loop, at every env step from the current observation, defines instead of
sample_actions (launch/engine/acting.py):
  initial_carry() -> carry           # one env's state between steps, a flat dict of arrays that holds
                                     # `steps_left` (int32): steps of the current decision still to come
  act_step(observations (1, ...), carry, key, evaluation) -> (actions (1, action_dim), carry, fields)
The engine pays owed updates and hands a fresh key where steps_left = 0 (elsewhere the key may repeat: an
agent that samples mid-decision keeps a key in its carry); it resets the carry at each episode's start and
saves it in checkpoints. `fields` {name: (1, ...)} are what it records beside the action, declared by
  transition_fields() -> {name: shape}   # optional: the online replay stores them; a batch that mixes in
                                         # offline rows (which have none) adds `recorded` (batch,) 0/1
and a frozen `Config` dataclass (agents.config.AgentConfig) built from configs/agent/<name>.yaml. The
dataclass holds every default: importing this package registers each Config's defaults as the Hydra config
agent_defaults/<algorithm>, which configs/agent/<algorithm>.yaml lists first and then states only what
differs (per-domain tables, the paper's variants).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from hydra.core.config_store import ConfigStore

# algorithm name (the `algorithm` key of configs/agent/*.yaml) -> module defining `Agent` and `Config`
ALGORITHMS = {
    "qc_fql": "agents.qc_fql",  # QC-FQL, FQL, FQL-n
    "qc": "agents.qc",  # QC (best-of-N), BFN, BFN-n
    "rlpd": "agents.rlpd",  # RLPD, RLPD-AC, QC-RLPD
    "radt": "agents.radt",  # RADT, DT
    "dqc": "agents.dqc",  # DQC and its ablations QC, NS, OS (goal-conditioned reach or reward returns)
    "iql": "agents.iql",  # IQL (AWR policy)
    "rebrac": "agents.rebrac",  # ReBRAC
    "fawac": "agents.fawac",  # FAWAC: advantage-weighted flow matching (QAM's baseline)
    "fbrac": "agents.fbrac",  # FBRAC: Q backpropagated through the flow's ODE (QAM's baseline)
    "cgql": "agents.cgql",  # CGQL, CGQL-M, CGQL-L: classifier guidance by the critic (QAM's baselines)
    "ifql": "agents.ifql",  # IFQL, IFQL-n, QC-IFQL
    "supe_gt": "agents.supe_gt",  # SUPE-GT: skills pre-trained offline, RLPD over skills online
    "qam": "agents.qam",  # QAM, QAM-E (edit policy), QAM-F (one-step policy): Q-learning, adjoint matching
    "dsrl": "agents.dsrl",  # DSRL: SAC over the BC flow's initial noise (QAM's baseline)
    "bam": "agents.bam",  # BAM: a flow fine-tuned through its memoryless SDE (QAM's baseline)
    "fedit": "agents.fedit",  # FEdit: a BC flow with EXPO's edit policy (QAM's baseline)
    "qsm": "agents.qsm",  # QSM, DAC: a DDPM policy led by the critic's action gradient (QAM's baselines)
}


def agent_module(algorithm: str):
    """The module implementing `algorithm`; an unknown name lists the valid ones."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown agent algorithm '{algorithm}'; valid: {sorted(ALGORITHMS)}")
    return importlib.import_module(ALGORITHMS[algorithm])


def make_config(agent_cfg: Mapping[str, Any]):
    """The frozen config of the agent that `agent_cfg['algorithm']` names."""
    return agent_module(agent_cfg["algorithm"]).Config.from_mapping(agent_cfg)


def make_agent(agent_cfg: Mapping[str, Any], seed: int, obs_dim: int | tuple[int, ...], action_dim: int):
    """A freshly initialised agent for a resolved agent config (a plain mapping)."""
    module = agent_module(agent_cfg["algorithm"])
    return module.Agent.create(seed, obs_dim, action_dim, make_config(agent_cfg))


def register_defaults() -> None:
    """Stores each algorithm's Config defaults as the Hydra config agent_defaults/<algorithm>: every field is
    then a key of the composed agent group, and `agent.<field>=...` overrides it without a `+`. Its PRESETS
    go to agent_presets/<algorithm>/<preset>, which configs/agent/<algorithm>.yaml lists for the chosen
    preset. Runs at import; call it again after adding an algorithm to ALGORITHMS."""
    store = ConfigStore.instance()
    for algorithm in ALGORITHMS:
        config = agent_module(algorithm).Config
        store.store(group="agent_defaults", name=algorithm, node=config.defaults())
        for preset, values in config.presets().items():
            store.store(group=f"agent_presets/{algorithm}", name=preset, node=values)


register_defaults()
