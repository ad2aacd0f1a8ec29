"""launch/engine/devices.py: a vector's run axis sharded over local devices (2 forced host devices, in a
subprocess: the device count is fixed when JAX starts)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
from pathlib import Path
import jax, numpy as np, pytest
from launch import train as train_module
from tests.test_vector import assert_same_rows, rows, tiny_config

assert len(jax.local_devices()) == 2
data, out = Path(sys.argv[1]), Path(sys.argv[2])
overrides = ("seed=[0,1]", "agent.alpha=[3,300]", "online_steps=10", "eval_interval=5")
sharded = train_module.train(tiny_config(data, "qc_fql", *overrides, "devices=2"), out / "sharded")
one = train_module.train(tiny_config(data, "qc_fql", *overrides, "devices=1"), out / "one")
for run, count in ((sharded, 2), (one, 1)):
    assert len(jax.tree_util.tree_leaves(run.agent.params)[0].sharding.device_set) == count
    assert len(run.replay.online.observations.sharding.device_set) == count

def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

jax.tree_util.tree_map(close, sharded.agent.params, one.agent.params)
jax.tree_util.tree_map(close, sharded.replay.online, one.replay.online)  # actions: float rounding
for member in sharded.members:
    assert_same_rows(rows(member.run_dir), rows(out / "one" / member.run_dir.name))
with pytest.raises(ValueError, match=r"devices=2: a vector of 3 runs does not split evenly over 2 devices"):
    train_module.train(tiny_config(data, "qc_fql", "seed=[0,1,2]", "devices=2"), out / "three")
print("OK")
"""


def test_a_sharded_vector_equals_the_unsharded_one(tiny_dataset_dir, tmp_path):
    """A 4-run alpha x seed vector over 2 devices (offline, online, evaluation) against the same vector on
    one: the same rows, and parameters and online data to float rounding; a size that the devices do not
    divide is refused."""
    environ = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    environ["PYTHONPATH"] = os.pathsep.join([str(REPO), environ.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_dataset_dir), str(tmp_path)],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr[-4000:]
