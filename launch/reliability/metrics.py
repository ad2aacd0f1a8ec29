"""metrics.jsonl, a run's local metrics: one JSON object per line, {step, phase, time, metric...}.

The Logger (launch/reliability/logger.py) appends to it. A resume keeps its rows up to the checkpoint's
step (`drop_rows_after`) and plotting reads it (launch/analysis/runs.py), both through `read_rows`, with one
rule for a torn line: a kill mid-write can tear only the last line, which is dropped with a warning; a bad
line anywhere else means the file is not one a run wrote, and stops the reader, naming the file and line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


def line_of(row: dict) -> str:
    """A row as its line in the file, newline included."""
    return json.dumps(row) + "\n"


def read_rows(path: Path) -> tuple[list[dict], bool]:
    """The rows of a metrics.jsonl, and whether its torn last line (a write cut short) was dropped."""
    lines = path.read_text().splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise ValueError(f"{path} line {number} is not JSON: {line[:80]!r}") from None
            log.warning("%s: dropping its torn last line %r (a write cut short)", path, line[:80])
            return rows, True
    return rows, False


def drop_rows_after(path: Path, step: int) -> None:
    """Drops the rows logged after `step` (a run resumed from that step logs them again), rewriting the rest
    as the Logger wrote them; no file, nothing to drop."""
    if path.exists():
        rows, _ = read_rows(path)
        path.write_text("".join(line_of(row) for row in rows if row["step"] <= step))
