"""Atomic writes and checksums: no half-written file ever looks complete."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

_BLOCK = 1 << 22


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def fsync_path(path: str | Path) -> None:
    """Flush a file's, or a folder's entries', writes to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `final` only if the block succeeds.

    Works for files and folders. The temporary name starts with `.tmp-`, so a crash leaves
    debris that no rule takes for an output.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Debris of an earlier attempt at this output that was killed (SIGKILL skips `finally`):
    # Snakemake runs one job per output, so no live writer owns these.
    prefix = f".tmp-{final.name}-"
    for stale in final.parent.glob(glob.escape(prefix) + "*"):
        if re.fullmatch(r"[a-z0-9_]{8}", stale.name[len(prefix) :]):  # mkdtemp's suffix, not another output's
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    target = tmp / final.name
    try:
        yield target
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(target, final)
        fsync_path(final.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)
