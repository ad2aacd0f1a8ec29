"""Every agent's tiny fixed-seed run writes the numbers recorded before the engine was restructured.

A restructuring must not change a number: each agent trains a few dozen offline and online steps on the
tiny pointmaze data with seed 0, and its metrics.jsonl is compared, row by row, with the record in
tests/data/fixed_seed_runs/<agent>.jsonl. On the machine that recorded them the rows are bit-identical; the
tolerance admits another CPU's float rounding (XLA picks kernels per instruction set), not a changed update.

Re-record (only for a change that is meant to change the numbers, said in its commit):
    python -m tests.test_fixed_seed_runs <dataset_dir>
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import compose_config
from tests.test_sequences import TINY as SEQUENCE_RUN
from tests.test_vector import rows, untimed

RECORDS = Path(__file__).parent / "data" / "fixed_seed_runs"
TRANSITION_RUN = [
    "agent.hidden_dims=[16,16]",
    "batch_size=16",
    "offline_steps=20",
    "online_steps=30",
    "start_training=10",
    "eval_interval=10",
    "eval_episodes=1",
    "log_interval=5",
    "save_interval=10",
    "updates_per_dispatch=5",
    "env.max_episode_steps=12",
    "buffer_size=2000",
]
# Settings an agent's tiny run needs beyond the shared ones (samples and ensembles kept small).
EXTRA = {
    "qc": ["agent.num_samples=4", "agent.flow_steps=3"],
    "bfn": ["agent.num_samples=4", "agent.flow_steps=3"],
    "bfn_n": ["agent.num_samples=4", "agent.flow_steps=3"],
    "dqc": ["agent.num_samples=4", "agent.flow_steps=3"],
    "dqc_qc": ["agent.num_samples=4", "agent.flow_steps=3"],
    "dqc_ns": ["agent.num_samples=4", "agent.flow_steps=3"],
    "dqc_os": ["agent.num_samples=4", "agent.flow_steps=3"],
    "ifql": ["agent.num_samples=4", "agent.flow_steps=3"],
    "ifql_n": ["agent.num_samples=4", "agent.flow_steps=3"],
    "qc_ifql": ["agent.num_samples=4", "agent.flow_steps=3"],
    "rlpd": ["random_action_steps=5", "agent.num_qs=2"],
    "rlpd_ac": ["random_action_steps=5", "agent.num_qs=2"],
    "qc_rlpd": ["random_action_steps=5", "agent.num_qs=2"],
    "supe_gt": ["agent.num_qs=2", "agent.vae_hidden_dims=[16,16]", "agent.encoder_size=8"],
}
SEQUENCE_AGENTS = ("radt", "dt")


def fixed_seed_config(dataset_dir, agent: str):
    if agent in SEQUENCE_AGENTS:
        return compose_config(f"agent={agent}", f"env.dataset_dir={dataset_dir}", "seed=0", *SEQUENCE_RUN)
    return compose_config(
        f"agent={agent}",
        "env=pointmaze",
        f"env.dataset_dir={dataset_dir}",
        "env.download=false",
        "logger.mode=disabled",
        "seed=0",
        *TRANSITION_RUN,
        *EXTRA.get(agent, []),
    )


def recorded_agents() -> list[str]:
    return sorted(path.stem for path in RECORDS.glob("*.jsonl"))


@pytest.mark.parametrize("agent", recorded_agents())
def test_fixed_seed_run_writes_the_recorded_numbers(agent, tiny_dataset_dir, tmp_path):
    from launch import train as train_module

    train_module.train(fixed_seed_config(tiny_dataset_dir, agent), tmp_path)
    got = untimed(rows(tmp_path))
    expected = [json.loads(line) for line in (RECORDS / f"{agent}.jsonl").read_text().splitlines()]
    assert [(row["step"], row["phase"], sorted(row)) for row in got] == [
        (row["step"], row["phase"], sorted(row)) for row in expected
    ]
    for got_row, expected_row in zip(got, expected, strict=True):
        for key in expected_row.keys() - {"step", "phase"}:
            np.testing.assert_allclose(
                got_row[key], expected_row[key], rtol=1e-4, atol=1e-6, err_msg=f"{key} at {got_row['step']}"
            )


def test_every_recorded_agent_is_still_a_config():
    from tests.helpers import CONFIGS

    assert recorded_agents(), "no records"
    assert set(recorded_agents()) <= {path.stem for path in (CONFIGS / "agent").glob("*.yaml")}


def record(dataset_dir: str, agents: list[str]) -> None:
    from launch import train as train_module

    RECORDS.mkdir(parents=True, exist_ok=True)
    for agent in agents:
        run_dir = Path(tempfile.mkdtemp())
        train_module.train(fixed_seed_config(dataset_dir, agent), run_dir)
        logged = untimed(rows(run_dir))
        (RECORDS / f"{agent}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in logged))
        shutil.rmtree(run_dir)
        print(agent, len(logged), "rows")


if __name__ == "__main__":
    from tests.helpers import CONFIGS

    record(sys.argv[1], sys.argv[2:] or sorted(path.stem for path in (CONFIGS / "agent").glob("*.yaml")))
