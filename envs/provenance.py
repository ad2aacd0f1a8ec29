"""Where a dataset file came from: a sidecar JSON beside it, `<file>.provenance.json`.

A generated file's sidecar says so, with what decides its content (seed, episode count, episode length, the
OGBench and MuJoCo versions); a file without one is taken for a download. The sidecar also caches the
file's sha256, keyed by its size and modification time, so a million-transition file is hashed once, not at
every run. A read-only dataset directory still works: the hash is then computed each time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

SUFFIX = ".provenance.json"
HASH_CHUNK = 1 << 24


def sidecar_of(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + SUFFIX)


def _read(path: Path) -> dict:
    sidecar = sidecar_of(path)
    return json.loads(sidecar.read_text()) if sidecar.is_file() else {}


def _write(path: Path, record: dict) -> None:
    """Replaces the sidecar atomically; a directory that cannot be written keeps none (logged)."""
    sidecar = sidecar_of(path)
    temporary = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        temporary.replace(sidecar)
    except OSError as error:
        logger.info("dataset: cannot write %s (%s); its sha256 is not cached", sidecar, error)


def mark_generated(path: Path, dataset_name: str, seed: int, stats: dict) -> None:
    """Records that `path` was generated, and from what (called by the generator after writing it)."""
    _write(
        path,
        {
            "generated": {
                "dataset": dataset_name,
                "generator": "envs/generate.py (OGBench's scripted oracles)",
                "seed": int(seed),
                "episodes": int(stats["episodes"]),
                "val_episodes": int(stats["val_episodes"]),
                "max_episode_steps": int(stats["max_episode_steps"]),
                "ogbench": metadata.version("ogbench"),
                "mujoco": metadata.version("mujoco"),
            }
        },
    )


def generation(path: Path) -> dict | None:
    """The generation record of `path`, or None for a file that was not generated here."""
    return _read(path).get("generated")


def sha256(path: Path) -> str:
    """The file's sha256, from the sidecar's cache while the file's size and mtime are unchanged."""
    path = Path(path)
    stat = path.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    record = _read(path)
    cached = record.get("sha256")
    if cached and {k: cached.get(k) for k in key} == key:
        return cached["digest"]
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
    _write(path, {**record, "sha256": {**key, "digest": digest.hexdigest()}})
    return digest.hexdigest()


def describe(path: Path, transitions: int, published: bool) -> dict:
    """What a run records of its dataset: path, size (transitions), sha256 and source ('generated', with
    its record; 'downloaded' for a file under its publisher's name without one; else 'unknown').

    published: whether `path` carries the publisher's file name (OGBench's, robomimic's).
    """
    record = generation(path)
    source = "generated" if record else ("downloaded" if published else "unknown")
    described = {"path": str(path), "transitions": int(transitions), "sha256": sha256(path), "source": source}
    if record:
        described["generated"] = record
    return described


def describe_shards(directory: Path, paths: list[Path], transitions: int) -> dict:
    """`describe` for a sharded set: its directory, its sha256 (of the shards' sha256s in file order) and
    'generated' when any shard was generated here (with the first such shard's record)."""
    digest = hashlib.sha256("".join(sha256(path) for path in paths).encode()).hexdigest()
    records = [record for record in map(generation, paths) if record]
    described = {
        "path": str(directory),
        "shards": len(paths),
        "transitions": int(transitions),
        "sha256": digest,
        "source": "generated" if records else "downloaded",
    }
    if records:
        described["generated"] = {**records[0], "generated_shards": len(records)}
    return described
