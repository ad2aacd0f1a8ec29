"""What the run says when a file it must write cannot be written (a full disk, a quota, a lost mount)."""

from __future__ import annotations

import shutil
from pathlib import Path


class WriteFailed(RuntimeError):
    """A checkpoint or metrics write failed; the message names the directory and its free space."""


def write_failed(directory: Path, what: str, error: OSError, then: str = "") -> WriteFailed:
    """The one-line error for `error` raised while writing `what` into `directory` (and what `then` holds)."""
    try:
        free = f"{shutil.disk_usage(directory).free / 2**30:.2f} GiB free there"
    except OSError:
        free = "its free space unknown"
    reason = error.strerror or str(error)
    return WriteFailed(f"could not write {what} in {directory}: {reason} ({free}){then}")
