"""Print where a figure or table came from, back to the finetune jobs, their data and its source.

    python -m weightspace.lineage results/figures/finetune_accuracy.svg [--verify] [--depth N]

Reads `<file>.provenance.json`, follows every input that has a provenance record of its own
(at most `--depth` levels below the file; default: all), and lists the zoo models behind it:
dataset, seed, checkpoint sha256, SLURM job, finetuning hyperparameters, then each model's
data splits (the files it was trained and tested on, with their sha256) and each dataset's
source (the package archive and its sha256, or the hub repository and commit). Paths in the
records are relative to the run's folder, found from the file's own path, so the command works
from any directory. `--verify` re-hashes every file named on the way (a progress bar on stderr
for large inputs) and exits 1 on any mismatch: a changed split or archive included.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from .provenance import file_problem, sidecar, verify


def load(path: str | Path) -> dict[str, Any]:
    side = sidecar(path)
    if not side.is_file():
        raise FileNotFoundError(f"{path} has no provenance record ({side.name})")
    return json.loads(side.read_text())


def run_folder(path: str | Path, record: dict[str, Any]) -> Path:
    """The folder the record's relative paths start from: `path` is `<folder>/<record output>`."""
    path, output = Path(path).absolute(), Path(record["output"])
    if output.is_absolute():
        return Path("/")
    parts = len(output.parts)
    if path.parts[-parts:] != output.parts:
        raise ValueError(f"{path} does not end with the output its record names ({output})")
    return Path(*path.parts[:-parts])


def print_data_lineage(root: Path, models: list[dict[str, Any]], out: TextIO, indent: str, check: bool) -> int:
    """Each zoo model's data splits and each dataset's source, verified when `check`."""
    bad, sources = 0, {}
    out.write(f"{indent}  data the models were trained and tested on:\n")
    for m in models:
        metrics_file = root / m["checkpoint"] / "metrics.json"
        data = json.loads(metrics_file.read_text()).get("data") if metrics_file.is_file() else None
        if not data:
            out.write(f"{indent}    {m['model_id']}: no data record (a model finetuned before data provenance)\n")
            continue
        line = ", ".join(f"{split} {rec['path']} sha256 {rec['sha256'][:12]}" for split, rec in data.items())
        problems = [p for rec in data.values() if check for p in [file_problem(root, rec["path"], rec["sha256"])] if p]
        bad += len(problems)
        out.write(f"{indent}    {m['model_id']}: {line}" + (f" -- {'; '.join(problems)}" if problems else " (match)" if check else "") + "\n")
        for rec in data.values():
            sources.setdefault(str(Path(rec["path"]).parent / "info.json"), set()).add(m["dataset"])
    out.write(f"{indent}  sources of the data:\n")
    for info_path in sorted(sources):
        info_file = root / info_path
        if not info_file.is_file():
            bad += int(check)
            out.write(f"{indent}    {info_path}: missing\n")
            continue
        info = json.loads(info_file.read_text())
        src = info.get("source") or {}
        if src.get("hub"):
            what = f"hub dataset {src['hub']} ({src.get('name') or 'default'}), revision {src.get('revision')} = commit {src.get('resolved_revision') or 'unknown'}"
        elif src.get("archive"):
            what = f"package {src.get('package')}: {src['archive']} sha256 {src['archive_sha256'][:12]}, files {src.get('files')}"
        else:
            what = f"local files {src.get('files')}"
        if "probe" in (info.get("splits_sha256") or {}):
            probe_path = Path(info_path).parent / "probe.parquet"
            rows = len(info.get("probe_row_hashes") or [])
            what += f"; probe split {probe_path} sha256 {info['splits_sha256']['probe'][:12]} ({rows} rows, read by the loss stages only)"
        problems = []
        if check:
            problems += [
                p
                for split, h in (info.get("splits_sha256") or {}).items()
                for p in [file_problem(root, str(Path(info_path).parent / f"{split}.parquet"), h)]
                if p
            ]
            if src.get("archive"):
                problems += [p for p in [file_problem(root, src["archive"], src["archive_sha256"])] if p]
            problems += [p for f, h in (src.get("files_sha256") or {}).items() for p in [file_problem(root, src["files"][f], h)] if p]
        bad += len(problems)
        out.write(f"{indent}    {info.get('dataset')}: {what}" + (f" -- {'; '.join(problems)}" if problems else " (match)" if check else "") + "\n")
    return bad


def print_lineage(
    path: str | Path,
    out: TextIO = sys.stdout,
    indent: str = "",
    seen: set[str] | None = None,
    check: bool = False,
    depth: int | None = None,
    root: Path | None = None,
    progress: bool = False,
) -> int:
    """Print the lineage tree of `path` (records `depth` levels below it; None: all); returns
    the number of files that failed verification."""
    seen = set() if seen is None else seen
    record = load(path if root is None else root / path)
    root = run_folder(path, record) if root is None else root
    dirty = " (uncommitted changes)" if record.get("git_dirty") else ""
    out.write(f"{indent}{record['output']}\n")
    out.write(f"{indent}  made by rule {record['rule']} at {record['created']}, workflow commit {record['git_commit']}{dirty}\n")
    out.write(f"{indent}  config it depends on (sha256 {record['config_sha256'][:12]}): {json.dumps(record['config'], sort_keys=True)[:300]}\n")
    bad = 0
    if check:
        problems = verify(record, root, progress)
        bad += len(problems)
        out.write(f"{indent}  verified: {'all ' + str(len(record['inputs']) + 1) + ' files match' if not problems else '; '.join(problems)}\n")
    if depth is None or depth > 0:
        for rec in record["inputs"]:
            if sidecar(root / rec["path"]).is_file() and rec["path"] not in seen:
                seen.add(rec["path"])
                out.write(f"{indent}  from:\n")
                bad += print_lineage(rec["path"], out, indent + "    ", seen, check, None if depth is None else depth - 1, root, progress)
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
        bad += print_data_lineage(root, record["zoo_models"], out, indent, check)
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m weightspace.lineage", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="a figure or table with a .provenance.json beside it (any current directory)")
    p.add_argument("--verify", action="store_true", help="re-hash every file named (data splits and sources included) and report mismatches")
    p.add_argument("--depth", type=int, default=None, help="follow provenance records at most this many levels below the file (default: all)")
    args = p.parse_args(argv)
    if args.depth is not None and args.depth < 0:
        p.error("--depth must be 0 or more")
    try:
        bad = print_lineage(args.file, check=args.verify, depth=args.depth, progress=args.verify)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
