"""Provenance sidecars: where a figure or table came from, down to the finetune jobs.

Every figure and table `X` gets `X.provenance.json` with the workflow's git commit and dirty
flag, the config values it depends on (and their hash), package versions, every input file
with its sha256, and the zoo models that fed it (ids, checkpoint sha256, training config).
Large files are not hashed again when the stage that wrote them recorded their sha256 next to
them (a weights folder's manifest.json, a model folder's checksums.json).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .integrity import CHECKSUMS_FILE
from .io import read_json, sha256_file, write_json

SUFFIX = ".provenance.json"
PACKAGES = ("snakemake", "torch", "transformers", "datasets", "pyarrow", "numpy", "pandas", "scikit-learn", "seaborn", "weightspace")


def git_state(folder: str | Path) -> dict[str, Any]:
    """The commit checked out in `folder` and whether tracked files differ from it."""

    def git(*args: str) -> str | None:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": (bool(status) if status is not None else None)}


def digest(values: Any) -> str:
    """sha256 of the canonical JSON of `values`."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _recorded(folder: Path) -> dict[str, str]:
    """sha256 values a stage recorded for the files of its output folder."""
    known: dict[str, str] = {}
    if (folder / "manifest.json").is_file():
        manifest = read_json(folder / "manifest.json")
        known.update({s["file"]: s["sha256"] for s in manifest.get("shards", [])})
        if "index_sha256" in manifest:
            known["index.parquet"] = manifest["index_sha256"]
    if (folder / CHECKSUMS_FILE).is_file():
        known.update(read_json(folder / CHECKSUMS_FILE))
    return known


def file_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """{path, bytes, sha256} for every file of `paths` (folders are walked; Snakemake's
    timestamp markers skipped)."""
    records = []
    for path in map(Path, paths):
        if path.is_dir():
            known = _recorded(path)
            for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
                rel = f.relative_to(path).as_posix()
                records.append({"path": str(f), "bytes": f.stat().st_size, "sha256": known.get(rel) or sha256_file(f)})
        else:
            records.append({"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    return records


def zoo_models(zoo_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The finetuned models behind an output: identity, checkpoint hash, training config."""
    out = []
    for row in zoo_rows:
        metrics = read_json(Path(row["checkpoint"]) / "metrics.json")
        out.append(
            {
                "model_id": row["model_id"],
                "dataset": row["dataset"],
                "seed": row["seed"],
                "derived_seed": metrics.get("derived_seed"),
                "checkpoint": row["checkpoint"],
                "checkpoint_sha256": row["checkpoint_sha256"],
                "weights": row["weights"],
                "finetune": metrics.get("finetune"),
                "slurm_job_id": metrics.get("slurm_job_id"),
            }
        )
    return out


def sidecar(output: str | Path) -> Path:
    return Path(str(output) + SUFFIX)


def write_provenance(
    output: str | Path,
    rule: str,
    inputs: Iterable[str | Path],
    config_values: Mapping[str, Any],
    workflow_dir: str | Path,
    zoo_rows: Sequence[Mapping[str, Any]] = (),
    path: str | Path | None = None,
    full_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the provenance of `output` (to `path`, default `<output>.provenance.json`)."""
    record = {
        "output": str(output),
        "output_sha256": sha256_file(output) if Path(output).is_file() else None,
        "rule": rule,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **git_state(workflow_dir),
        "full_config_sha256": digest({k: v for k, v in full_config.items() if k != "workflow_provenance"}) if full_config is not None else None,
        "config_sha256": digest(config_values),
        "config": dict(config_values),
        "versions": versions(),
        "inputs": file_records(inputs),
        "zoo_models": zoo_models(zoo_rows),
    }
    write_json(path or sidecar(output), record)
    return record


def write_job_provenance(
    job: Any,
    output: str | Path,
    zoo_rows: Sequence[Mapping[str, Any]] | None = None,
    path: str | Path | None = None,
    twins: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """The provenance of a rule's `output`, from the job's `snakemake` object: every input file
    it was given, its params (the config values it depends on), its rule, the workflow's
    commit and the whole config's hash. `zoo_rows`: the zoo models that fed it (default: every
    row of its `zoo` input, none without one). Written to `path`, default its `provenance`
    output. `twins`: the same content in another format (a figure's SVG, a table's Markdown):
    each gets the same record, naming itself, in `<twin>.provenance.json`."""
    from .zoo import read_zoo

    if zoo_rows is None:
        zoo_rows = read_zoo(job.input.zoo).to_pylist() if "zoo" in job.input.keys() else []
    record = write_provenance(output, job.rule, list(job.input), dict(job.params), Path(job.scriptdir), zoo_rows, path or job.output.provenance, job.config)
    for twin in twins:
        write_json(sidecar(twin), {**record, "output": str(twin), "output_sha256": sha256_file(twin), "twin_of": str(output)})
    return record


def file_problem(root: str | Path, path: str, sha256: str | None) -> str | None:
    """What is wrong with one recorded file (`path` under `root`): missing, or its content no
    longer has the recorded sha256; None when it matches or nothing was recorded."""
    if sha256 is None:
        return None
    p = Path(root) / path
    if not p.is_file():
        return f"{path}: missing"
    if sha256_file(p) != sha256:
        return f"{path}: sha256 differs from the recorded one"
    return None


def verify(provenance: Mapping[str, Any], root: str | Path | None = None, progress: bool = False) -> list[str]:
    """Files named in a provenance record whose content no longer matches; [] if all match.
    Relative paths are read under `root` (the run's folder; default: the current one).
    `progress`: a bar of bytes hashed on stderr (large inputs take a while)."""
    from tqdm.auto import tqdm

    base = Path(root) if root is not None else Path()
    recs = [r for r in [{"path": provenance["output"], "sha256": provenance["output_sha256"]}, *provenance["inputs"]] if r["sha256"] is not None]
    problems = []
    bar = tqdm(
        total=sum(int(r.get("bytes") or 0) for r in recs), unit="B", unit_scale=True, desc=f"verify {provenance['output']}", disable=not progress, leave=False
    )
    for rec in recs:
        problem = file_problem(base, rec["path"], rec["sha256"])
        if problem:
            problems.append(problem)
        bar.update(int(rec.get("bytes") or 0))
    bar.close()
    return problems
