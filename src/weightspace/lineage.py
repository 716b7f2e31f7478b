"""Print where a figure or table came from, back to the finetune jobs and their configs.

    python -m weightspace.lineage results/figures/finetune_accuracy.png [--verify]

Reads `<file>.provenance.json`, follows every input that has a provenance record of its own,
and lists the zoo models behind it: dataset, seed, checkpoint sha256, SLURM job, and the
finetuning hyperparameters. `--verify` re-hashes every file named and exits 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from .provenance import sidecar, verify


def load(path: str | Path) -> dict[str, Any]:
    side = sidecar(path)
    if not side.is_file():
        raise FileNotFoundError(f"{path} has no provenance record ({side.name})")
    return json.loads(side.read_text())


def print_lineage(path: str | Path, out: TextIO = sys.stdout, indent: str = "", seen: set[str] | None = None, check: bool = False) -> int:
    """Print the lineage tree of `path`; returns the number of files that failed verification."""
    seen = set() if seen is None else seen
    record = load(path)
    dirty = " (uncommitted changes)" if record.get("git_dirty") else ""
    out.write(f"{indent}{record['output']}\n")
    out.write(f"{indent}  made by rule {record['rule']} at {record['created']}, workflow commit {record['git_commit']}{dirty}\n")
    out.write(f"{indent}  config it depends on (sha256 {record['config_sha256'][:12]}): {json.dumps(record['config'], sort_keys=True)[:300]}\n")
    bad = 0
    if check:
        problems = verify(record)
        bad += len(problems)
        out.write(f"{indent}  verified: {'all ' + str(len(record['inputs']) + 1) + ' files match' if not problems else '; '.join(problems)}\n")
    for rec in record["inputs"]:
        if sidecar(rec["path"]).is_file() and rec["path"] not in seen:
            seen.add(rec["path"])
            out.write(f"{indent}  from:\n")
            bad += print_lineage(rec["path"], out, indent + "    ", seen, check)
    if record["zoo_models"] and not indent:
        out.write(f"{indent}  finetuned models ({len(record['zoo_models'])}):\n")
        for m in record["zoo_models"]:
            hp = m.get("finetune") or {}
            keys = ("lr", "batch_size", "max_steps", "epochs", "max_length")
            out.write(
                f"{indent}    {m['model_id']}: dataset {m['dataset']}, seed {m['seed']} (derived {m['derived_seed']}), "
                f"checkpoint {m['checkpoint']} sha256 {m['checkpoint_sha256'][:12]}, "
                f"SLURM job {m.get('slurm_job_id') or '-'}, " + ", ".join(f"{k}={hp.get(k)}" for k in keys) + "\n"
            )
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m weightspace.lineage", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="a figure or table with a .provenance.json beside it")
    p.add_argument("--verify", action="store_true", help="re-hash every file named and report mismatches")
    args = p.parse_args(argv)
    try:
        bad = print_lineage(args.file, check=args.verify)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
