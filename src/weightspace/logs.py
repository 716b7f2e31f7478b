"""Send a job's stderr (Python logging, tqdm progress bars, library warnings) to its log file."""

from __future__ import annotations

import logging
import os
import sys


def to_log_file(path: str | None) -> None:
    """Redirect file descriptor 2 to `path` (appending, so a resumed job keeps the earlier
    attempt's lines) and configure logging to write there with timestamps."""
    if path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("weightspace").info("%s", where_am_i())


def where_am_i() -> str:
    """Host, process and, inside a SLURM job, the job id: the job's own record of where it ran."""
    import socket

    job = os.environ.get("SLURM_JOB_ID")
    return f"host {socket.gethostname()}, pid {os.getpid()}, " + (f"SLURM job {job}" if job else "not a SLURM job")
