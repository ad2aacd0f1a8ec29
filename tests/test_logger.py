"""W&B per member (launch/reliability/logger.py): every run of a vector is its own offline W&B run, read back
from its `.wandb` file and compared with the member's metrics.jsonl, offline and online phases, and after a
resume."""

import numpy as np

from launch import train as train_module
from tests import wandb_records
from tests.helpers import train_interrupted
from tests.test_vector import rows, tiny_config


def offline_config(dataset_dir, *overrides):
    return tiny_config(dataset_dir, "qc_fql", "seed=[0,1]", "logger.mode=offline", *overrides)


def test_each_member_of_a_vector_is_its_own_wandb_run(tiny_dataset_dir, tmp_path, capfd):
    run = train_module.train(offline_config(tiny_dataset_dir), tmp_path / "vector")
    printed = capfd.readouterr()
    assert "Weave" not in printed.out + printed.err and "Detected [" not in printed.out + printed.err
    ids = set()
    for member in run.members:
        (path,) = wandb_records.run_files(member.run_dir)
        record = wandb_records.run_record(path)
        ids.add(record.run_id)
        assert record.run_id == (member.run_dir / "wandb_id.txt").read_text()
        assert record.run_group == "vector" and record.display_name == member.run_dir.name
        assert f"seed={member.seed}" in record.tags
        config = wandb_records.run_config(record)
        assert config["seed"] == member.seed and config["dataset"] == run.dataset_records[0]
        assert config["dataset"]["source"] == "generated"  # tests/conftest.py's tiny datasets
        logged = rows(member.run_dir)
        assert {row["phase"] for row in logged} == {"offline", "online"}
        history = wandb_records.history(path)
        # rows of one step are one history row in W&B (wandb merges the logs of a step)
        expected: dict[int, dict] = {}
        for row in logged:
            expected.setdefault(row["step"], {}).update(
                {key: value for key, value in row.items() if key not in ("step", "phase", "time")}
            )
        assert [row["_step"] for row in history] == sorted(expected)
        for row in history:
            metrics = expected[row["_step"]]
            assert set(row) == {"_step", "time/elapsed", *metrics}
            for key, value in metrics.items():
                np.testing.assert_allclose(row[key], value, rtol=1e-6, err_msg=key)
    assert len(ids) == len(run.members)


def test_a_resumed_vector_continues_each_members_own_wandb_run(tiny_dataset_dir, tmp_path, monkeypatch):
    run_dir = tmp_path / "resumed"
    train_interrupted(train_module.train, offline_config(tiny_dataset_dir), run_dir, monkeypatch, 4)
    run = train_module.train(offline_config(tiny_dataset_dir, "resume=true"), run_dir)
    ids = []
    for member in run.members:
        sessions = wandb_records.run_files(member.run_dir)
        assert len(sessions) == 2
        (run_id,) = {wandb_records.run_record(path).run_id for path in sessions}
        ids.append(run_id)
    assert len(set(ids)) == len(ids)
