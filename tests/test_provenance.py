"""Dataset provenance (envs/provenance.py): generated files carry their record and their own name, the
published file is preferred, the sha256 is cached, and a run records which data it trained on."""

import hashlib
import json
import logging
import shutil
from importlib import metadata

import ogbench
from omegaconf import OmegaConf

from envs import describe_dataset, generate_dataset, locate_dataset, provenance
from launch import train as train_module
from tests.helpers import MAZE, env_cfg
from tests.test_vector import tiny_config


def file_sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_generated_file_records_how_it_was_made(tmp_path):
    path = tmp_path / "maze.npz"
    generate_dataset(MAZE, path, num_episodes=2, max_episode_steps=20, workers=1, seed=7)
    assert provenance.generation(path) == {
        "dataset": MAZE,
        "generator": "envs/generate.py (OGBench's scripted oracles)",
        "seed": 7,
        "episodes": 2,
        "val_episodes": 1,
        "max_episode_steps": 20,
        "ogbench": metadata.version("ogbench"),
        "mujoco": metadata.version("mujoco"),
    }
    described = describe_dataset(env_cfg("pointmaze"), path, transitions=38)
    assert described == {
        "path": str(path),
        "transitions": 38,
        "sha256": file_sha256(path),
        "source": "generated",
        "generated": provenance.generation(path),
    }


def test_the_published_file_is_preferred_to_a_generated_one(tiny_dataset_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(ogbench, "download_datasets", lambda *args: (_ for _ in ()).throw(OSError("offline")))
    generated = tmp_path / f"{MAZE}-generated-s0.npz"
    for suffix in (".npz", "-val.npz"):  # a generated pair of the published size, as lookup names it
        shutil.copy(tiny_dataset_dir / f"{MAZE}{suffix}", tmp_path / f"{MAZE}-generated-s0{suffix}")
    with caplog.at_level(logging.WARNING, logger="envs.datasets"):
        assert locate_dataset(env_cfg("pointmaze", dataset_dir=str(tmp_path)), seed=0).path == generated
    assert f"{generated} was generated locally, not OGBench's published data" in caplog.text
    published = tmp_path / f"{MAZE}.npz"
    for suffix in (".npz", "-val.npz"):  # then the published pair arrives, with no generation record
        shutil.copy(tiny_dataset_dir / f"{MAZE}{suffix}", tmp_path / f"{MAZE}{suffix}")
    resolved = locate_dataset(env_cfg("pointmaze", dataset_dir=str(tmp_path)), seed=0)
    assert (resolved.path, resolved.source) == (published, "existing")
    assert describe_dataset(env_cfg("pointmaze"), published, 800)["source"] == "downloaded"
    elsewhere = tmp_path / "elsewhere.npz"  # neither generated here nor under the published name
    shutil.copy(published, elsewhere)
    assert describe_dataset(env_cfg("pointmaze"), elsewhere, 800)["source"] == "unknown"


def test_the_sha256_is_cached_until_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "data.npz"
    path.write_bytes(b"first content")
    assert provenance.sha256(path) == file_sha256(path)
    cached = json.loads(provenance.sidecar_of(path).read_text())["sha256"]
    assert cached["digest"] == file_sha256(path) and cached["size"] == len(b"first content")
    monkeypatch.setattr(provenance.hashlib, "sha256", None)  # a second hash would fail
    assert provenance.sha256(path) == cached["digest"]
    monkeypatch.undo()
    path.write_bytes(b"other content, longer")
    assert provenance.sha256(path) == file_sha256(path) != cached["digest"]


def test_a_run_records_its_dataset_in_its_config(tiny_dataset_dir, tmp_path):
    """The tiny datasets of tests/conftest.py are generated: a run on one says so, in .hydra/config.yaml."""
    run = train_module.train(tiny_config(tiny_dataset_dir, "qc_fql", "online_steps=0"), tmp_path / "run")
    saved = OmegaConf.to_container(OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml"))
    path = tiny_dataset_dir / f"{MAZE}.npz"
    assert saved["dataset"] == {
        "path": str(path),
        "transitions": 800,  # 4 episodes of 201 steps, OGBench's loader drops each episode's last one
        "sha256": file_sha256(path),
        "source": "generated",
        "generated": provenance.generation(path),
    }
    assert saved["dataset"]["generated"]["episodes"] == 4 and run.dataset_records == [saved["dataset"]]
