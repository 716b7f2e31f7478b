"""Check a preset's Hugging Face hub entries: offline (ids, pins, loading scripts) and on the hub.

    python -m weightspace.check_sources presets/paper.yaml [--rows 5] [--pin] [--only NAME ...]

Offline (:func:`check_offline`, no network) every hub entry (each dataset's ``source.hub`` and
``base_model.hub``) must name a namespaced repository (``namespace/name``: current
huggingface_hub rejects bare legacy ids such as ``glue``), pin ``revision`` to a 40-hex commit
and not load a repository listed in the preset's loading-script list (``<preset>.hub-scripts.txt``
beside the preset; current ``datasets`` no longer runs loading scripts). A listed repository is
accepted only through its parquet export: ``revision: refs/convert/parquet`` (to pin) or an
export commit written after the id on its line of the list.

On a machine with hub access the command also streams the first ``--rows`` rows of every split
of every dataset entry, checks that the text, pair and label fields exist and that the label
values fall in the entry's ``labels`` (after ``label_map``), and prints one OK/FAIL row per
entry. ``--pin`` resolves each entry's revision (``main`` where none is set, or a branch such as
``refs/convert/parquet``) to its commit with ``HfApi().dataset_info(repo, revision=...).sha``
(``model_info`` for the base model) and writes it into the ``revision:`` line of that entry,
keeping the file's comments; an export commit of a listed repository is added to the list.

``datasets`` and ``huggingface_hub`` are imported only by the functions that reach the hub.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import yaml

from .sources import RESOLVE

COMMIT = re.compile(r"^[0-9a-f]{40}$")
EXPORT_BRANCH = "refs/convert/parquet"
PIN_HINT = "python -m weightspace.check_sources presets/paper.yaml --pin"
DEFAULT_SCRIPTS = Path(__file__).resolve().parents[2] / "presets" / "paper.hub-scripts.txt"

#: scripted repository id (lower case) -> export revisions through which it may be loaded
Scripts = Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class Problem:
    """One offline finding: where (a dotted key), what kind, and what to do."""

    key: str
    kind: str  # "namespace" | "script" | "revision" | "resolve" (said on purpose)
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def scripts_path_for(preset: str | Path) -> Path:
    """``presets/paper.yaml`` -> ``presets/paper.hub-scripts.txt``."""
    preset = Path(preset)
    return preset.with_name(preset.stem + ".hub-scripts.txt")


def parse_hub_scripts(text: str) -> dict[str, frozenset[str]]:
    """The loading-script list: one repository id a line, optionally followed by the commits of
    its parquet export that may be loaded; ``#`` starts a comment."""
    scripts: dict[str, frozenset[str]] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            scripts[words[0].lower()] = frozenset({EXPORT_BRANCH, *words[1:]})
    return scripts


def load_hub_scripts(path: str | Path = DEFAULT_SCRIPTS) -> dict[str, frozenset[str]]:
    return parse_hub_scripts(Path(path).read_text(encoding="utf-8"))


def hub_entries(config: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(dotted key, block holding ``hub``/``revision``) for the base model and each hub dataset."""
    entries: list[tuple[str, Mapping[str, Any]]] = []
    base = config.get("base_model") or {}
    if base.get("hub"):
        entries.append(("base_model", base))
    for name, entry in (config.get("datasets") or {}).items():
        source = (entry or {}).get("source") or {}
        if source.get("hub"):
            entries.append((f"datasets.{name}.source", source))
    return entries


def offline_problems(config: Mapping[str, Any], scripts: Scripts) -> list[Problem]:
    """Every offline problem of the config's hub entries (see the module docstring)."""
    problems: list[Problem] = []
    for key, block in hub_entries(config):
        repo, revision = str(block["hub"]), block.get("revision")
        if repo.count("/") != 1 or not all(repo.split("/")):
            problems.append(Problem(f"{key}.hub", "namespace", f"{repo!r} is not 'namespace/name' (current huggingface_hub rejects bare legacy ids)"))
        allowed = scripts.get(repo.lower())
        if allowed is not None and revision not in allowed:
            problems.append(
                Problem(
                    f"{key}.hub",
                    "script",
                    f"{repo!r} is a loading-script repository (hub-scripts list) and revision {revision!r} is not its parquet export; "
                    f"use revision {EXPORT_BRANCH!r} or a commit of that branch listed after the id",
                )
            )
        if revision == RESOLVE:
            # said on purpose (the entry's comment gives the reason): resolved at run time and
            # recorded in info.json; --pin writes the commit in
            problems.append(Problem(f"{key}.revision", "resolve", f"resolved to main's commit at run time (recorded in info.json); run `{PIN_HINT}` to pin it"))
        elif revision is None:
            problems.append(Problem(f"{key}.revision", "revision", f"no revision pinned; run `{PIN_HINT}` where the hub is reachable"))
        elif not COMMIT.match(str(revision)):
            problems.append(Problem(f"{key}.revision", "revision", f"{revision!r} is a branch or tag, not a commit; run `{PIN_HINT}`"))
    return problems


def check_offline(config: Mapping[str, Any], scripts: Scripts | None = None) -> list[str]:
    """Offline problems of the config's hub entries as messages (empty: all fine). No network.

    ``scripts`` defaults to the loading-script list kept beside the paper preset."""
    return [str(p) for p in offline_problems(config, load_hub_scripts() if scripts is None else scripts)]


# ---------------------------------------------------------------------------------------------
# on the hub: first rows of every split


@dataclass
class EntryResult:
    name: str
    repo: str
    revision: str | None
    ok: bool = True
    notes: list[str] = field(default_factory=list)

    def fail(self, note: str) -> None:
        self.ok = False
        self.notes.append(note)


#: loader(repo, config_name, split, revision, n) -> (first n rows, label names or None)
Loader = Callable[[str, str | None, str, str | None, int], tuple[list[dict[str, Any]], list[str] | None]]


def load_first_rows(repo: str, name: str | None, split: str, revision: str | None, n: int) -> tuple[list[dict[str, Any]], list[str] | None]:
    """The first ``n`` rows of a split, streamed (a sliced download where streaming fails)."""
    import datasets as hf

    try:
        ds = hf.load_dataset(repo, name, split=split, revision=revision, streaming=True)
        rows = [dict(r) for r in itertools.islice(ds, n)]
    except Exception:  # noqa: BLE001 - some builders cannot stream; the slice downloads the split
        ds = hf.load_dataset(repo, name, split=f"{split}[:{n}]", revision=revision)
        rows = [dict(r) for r in ds]
    return rows, label_names(getattr(ds, "features", None))


def label_names(features: Any) -> list[str] | None:
    """The ClassLabel names of the first ClassLabel feature, for the report."""
    for feature in (features or {}).values():
        names = getattr(feature, "names", None)
        if names:
            return list(names)
    return None


def _fields(spec: str | Sequence[str] | None) -> list[str]:
    if not spec:
        return []
    return [spec] if isinstance(spec, str) else list(spec)


def check_rows(result: EntryResult, part: str, rows: Sequence[Mapping[str, Any]], entry: Mapping[str, Any]) -> None:
    """Field and label checks of one split's first rows, recorded on ``result``."""
    if not rows:
        result.fail(f"{part}: no rows")
        return
    columns = set(rows[0])
    wanted = [*_fields(entry.get("text")), *_fields(entry.get("text_pair")), entry["label"]]
    missing = [f for f in wanted if f not in columns]
    if missing:
        result.fail(f"{part}: fields {missing} missing; columns are {sorted(columns)}")
        return
    mapping = {str(k): str(v) for k, v in (entry.get("label_map") or {}).items()}
    declared = {str(x) for x in entry.get("labels") or []}
    seen = {mapping.get(str(r[entry["label"]]), str(r[entry["label"]])) for r in rows if r[entry["label"]] is not None}
    outside = sorted(seen - declared) if declared else []
    if outside:
        if entry.get("other_labels") == "drop":
            result.notes.append(f"{part}: labels {outside} outside the declared set (other_labels: drop)")
        else:
            result.fail(f"{part}: labels {outside} outside the declared set {sorted(declared)}")


def check_entry(name: str, entry: Mapping[str, Any], rows: int, loader: Loader = load_first_rows) -> EntryResult:
    """Load the first ``rows`` rows of every split of one hub dataset entry and check them."""
    source = entry["source"]
    result = EntryResult(name, source["hub"], source.get("revision"))
    for part, split in source["splits"].items():
        try:
            first, names = loader(source["hub"], source.get("name"), split, source.get("revision"), rows)
        except Exception as e:  # noqa: BLE001 - any loading error is this entry's FAIL
            result.fail(f"{part} ({split}): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        check_rows(result, f"{part} ({split})", first, entry)
        if names and f"label names {names}" not in result.notes:
            result.notes.append(f"label names {names}")
    return result


def format_table(results: Iterable[EntryResult]) -> str:
    lines = [f"{'entry':22} {'repository':42} {'revision':12} status  notes"]
    for r in results:
        rev = (r.revision or "-")[:12]
        lines.append(f"{r.name:22} {r.repo:42} {rev:12} {'OK' if r.ok else 'FAIL':6}  {'; '.join(r.notes)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# --pin: resolve revisions and write them into the YAML text


def resolve_revision(repo: str, revision: str | None, kind: str = "dataset") -> str:
    """The commit a revision (``None`` = main, a branch, a tag or a commit) points to now."""
    from huggingface_hub import HfApi

    api = HfApi()
    revision = None if revision == RESOLVE else revision
    info = api.model_info(repo, revision=revision) if kind == "model" else api.dataset_info(repo, revision=revision)
    return str(info.sha)


def _block_end(lines: Sequence[str], start: int) -> int:
    """Index after the block whose header is ``lines[start]`` (the lines indented deeper)."""
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines):
        line = lines[end]
        if line.strip() and not line.lstrip().startswith("#") and len(line) - len(line.lstrip()) <= indent:
            break
        end += 1
    return end


def _find_key(lines: Sequence[str], key: str, start: int, end: int, indent: int) -> int | None:
    pattern = re.compile(rf"^ {{{indent}}}{re.escape(key)}:(\s|$)")
    for i in range(start, end):
        if pattern.match(lines[i]):
            return i
    return None


def _child_indent(lines: Sequence[str], start: int, end: int) -> int | None:
    for line in lines[start:end]:
        if line.strip() and not line.lstrip().startswith("#"):
            return len(line) - len(line.lstrip())
    return None


def set_revision(text: str, key: str, sha: str, note: str = "pinned by check_sources --pin") -> str | None:
    """``text`` with the ``revision:`` of the hub entry at ``key`` (``base_model`` or
    ``datasets.NAME.source``) set to ``sha``, other lines and comments unchanged; ``None``
    where the layout is not the expected block style (then print the line to paste)."""
    lines = text.splitlines(keepends=True)
    if not isinstance(yaml.safe_load(sha), str):
        sha = f"'{sha}'"  # all digits (or digits and one e) would load as a number
    start, end, indent = 0, len(lines), 0
    for part in key.split("."):
        i = _find_key(lines, part, start, end, indent)
        if i is None or lines[i].split("#", 1)[0].rstrip().endswith("}"):
            return None
        start, end = i + 1, _block_end(lines, i)
        child = _child_indent(lines, start, end)
        if child is None:
            return None
        indent = child
    pad = " " * indent
    rev = _find_key(lines, "revision", start, end, indent)
    if rev is not None:
        lines[rev] = f"{pad}revision: {sha}  # {note}\n"
    else:
        hub = _find_key(lines, "hub", start, end, indent)
        if hub is None:
            return None
        lines.insert(hub + 1, f"{pad}revision: {sha}  # {note}\n")
    return "".join(lines)


def add_export_commit(scripts_text: str, repo: str, sha: str) -> str:
    """The loading-script list with ``sha`` allowed as a parquet-export commit of ``repo``."""
    out = []
    for line in scripts_text.splitlines(keepends=True):
        body, hash_, comment = line.rstrip("\n").partition("#")
        words = body.split()
        if words and words[0].lower() == repo.lower() and sha not in words:
            line = " ".join([*words, sha]) + (f"  {hash_}{comment}" if hash_ else "") + "\n"
        out.append(line)
    return "".join(out)


def pin(preset: Path, scripts_file: Path, only: set[str] | None) -> list[str]:
    """Resolve and write every selected entry's revision; returns what could not be written."""
    text = preset.read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    scripts_text = scripts_file.read_text(encoding="utf-8") if scripts_file.exists() else ""
    scripts = parse_hub_scripts(scripts_text)
    unwritten = []
    for key, block in hub_entries(config):
        name = key.split(".")[1] if key.startswith("datasets.") else key
        if only and name not in only:
            continue
        repo, revision = block["hub"], block.get("revision")
        try:
            sha = resolve_revision(repo, revision, kind="model" if key == "base_model" else "dataset")
        except Exception as e:  # noqa: BLE001 - report and go on with the other entries
            unwritten.append(f"{key}: {repo}@{revision or 'main'} not resolved ({type(e).__name__}: {e})")
            continue
        print(f"{name}: {repo} {revision or 'main'} -> {sha}")
        new = set_revision(text, key, sha)
        if new is None:
            unwritten.append(f"{key}: paste `revision: {sha}`")
        else:
            text = new
        if repo.lower() in scripts and revision == EXPORT_BRANCH:
            scripts_text = add_export_commit(scripts_text, repo, sha)
    preset.write_text(text, encoding="utf-8")
    if scripts_text:
        scripts_file.write_text(scripts_text, encoding="utf-8")
    return unwritten


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weightspace.check_sources", description=__doc__.split("\n\n")[0])
    parser.add_argument("preset", type=Path, help="a config file, e.g. presets/paper.yaml")
    parser.add_argument("--rows", type=int, default=5, help="rows to load from the start of every split (default 5)")
    parser.add_argument("--pin", action="store_true", help="resolve each entry's revision to a commit and write it into the file")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="check (and pin) only these dataset entries (base_model is pinned by naming it)")
    parser.add_argument("--scripts", type=Path, help="loading-script list (default: <preset>.hub-scripts.txt beside the preset)")
    parser.add_argument("--offline", action="store_true", help="only the offline checks (no network)")
    args = parser.parse_args(argv)

    scripts_file = args.scripts or scripts_path_for(args.preset)
    only = set(args.only) if args.only else None
    if args.pin:
        for line in pin(args.preset, scripts_file, only):
            print(f"not pinned: {line}")
    config = yaml.safe_load(args.preset.read_text(encoding="utf-8"))
    scripts = load_hub_scripts(scripts_file) if scripts_file.exists() else {}
    if not scripts_file.exists():
        print(f"warning: no loading-script list at {scripts_file}")
    problems = offline_problems(config, scripts)
    for p in problems:
        print(f"offline: {p}")
    failed = any(p.kind != "resolve" for p in problems)  # a `resolve` entry is said on purpose
    if not args.offline:
        results = []
        for name, entry in (config.get("datasets") or {}).items():
            if entry["source"].get("hub") and (only is None or name in only):
                results.append(check_entry(name, entry, args.rows))
        print(format_table(results))
        failed = failed or not all(r.ok for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
