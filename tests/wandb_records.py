"""Reading offline W&B runs back: wandb 0.31 ships no Python reader for its `.wandb` files.

A `.wandb` file is a LevelDB-style log: a 7-byte file header, then 32 KiB blocks of records, each record (or
fragment of one) behind a 7-byte header: crc (4 bytes), length (2, little-endian), type (1: whole, 2-4:
first, middle, last fragment). Each record is a `wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

BLOCK, HEADER = 32768, 7


def run_files(run_dir: Path) -> list[Path]:
    """The `.wandb` files of every session of the offline run in `run_dir`, oldest first (the directory
    names start with the session's start time)."""
    return sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))


def records(path: Path, wait_s: float = 60.0) -> list:
    """Every record of one `.wandb` file, in order, once the file is whole: `run.finish()` returns before
    wandb's service process has flushed the file, so a file read right after it may still lack its records;
    it is read again until it ends with the run's exit record (at most `wait_s` seconds)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = list(_records(path))
        if found and found[-1].HasField("exit") or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _records(path: Path) -> Iterator:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    offset, payload = HEADER, b""
    while offset + HEADER <= len(data):
        if BLOCK - offset % BLOCK < HEADER:  # a block's tail too short for a header is padding
            offset += BLOCK - offset % BLOCK
            continue
        length, kind = int.from_bytes(data[offset + 4 : offset + 6], "little"), data[offset + 6]
        payload += data[offset + HEADER : offset + HEADER + length]
        offset += HEADER + length
        if kind in (1, 4):  # a whole record, or the last fragment of one
            yield wandb_internal_pb2.Record.FromString(payload)
            payload = b""


def run_record(path: Path):
    """The run record (id, group, tags, config) of one `.wandb` file."""
    for record in records(path):
        if record.HasField("run"):
            return record.run
    raise AssertionError(f"no run record in {path}")


def _key(item) -> str:
    """An item's key: `key`, or its `nested_key` parts joined with '/' (wandb's core writes the latter)."""
    return item.key or "/".join(item.nested_key)


def run_config(run) -> dict:
    """A run record's config, its top-level keys to their values."""
    return {_key(item): json.loads(item.value_json) for item in run.config.update}


def history(path: Path) -> list[dict]:
    """The history rows of one `.wandb` file: {key: value} with the step under `_step`, wandb's own keys
    (`_runtime`, `_timestamp`) left out."""
    rows = []
    for record in records(path):
        if record.HasField("history"):
            row = {_key(item): json.loads(item.value_json) for item in record.history.item}
            rows.append({key: value for key, value in row.items() if key not in ("_runtime", "_timestamp")})
    return rows
