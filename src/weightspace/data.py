"""Raw datasets -> clean, de-duplicated, seeded stratified train/dev/test splits.

Paper recipe (methods.md §2): the original validation split serves as test, a dev split for
early stopping is carved from train. Sources without splits get a seeded stratified test split
first. [choice] dev = a seeded stratified `dev_fraction` of train, at most `max_dev` examples
(the paper: first/last 5%, or 500 each side above 10k examples).

[choice] A fourth split, the **probe split**, is carved from what remains of train: a seeded
stratified `probe_fraction`, at most `max_probe` examples. No finetune or BitFit run ever reads
it; the generalized loss fits its head there (`loss.probe_on: probe`), so a body that memorised
its train split is not judged by a head fitted on the examples it memorised
(docs/generalized-loss.md). It must hold at least `min_probe` examples and two labels, else
prepare_data stops. The train cap (`max_train`) applies last, so a size-experiment variant
keeps its parent's dev, probe and test splits. Changing the probe settings changes the train
split (the probe is carved first), so every finetune of the dataset reruns.

Cleaning, in order (counts land in info.json):
1. rows with a missing or blank text field are dropped;
2. labels pass through `label_map`, then rows with an undeclared label stop the run
   (`other_labels: error`, the default) or are dropped (`other_labels: drop`);
3. exact duplicates (same whitespace-normalised text, and pair, within a split) keep one copy;
   a text that occurs with two different labels is dropped everywhere (ambiguous);
4. train examples whose text also occurs in test are dropped (no test leakage).
Texts longer than `max_length` tokens are truncated at tokenisation.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import sources
from .seeding import derive_seed

TEXT, PAIR, LABEL = "text", "text_pair", "label"


class DataError(ValueError):
    """A problem with a dataset's content, naming the dataset."""

    def __init__(self, dataset: str, problem: str):
        super().__init__(f"dataset '{dataset}': {problem}")


SPLITS = ("train", "dev", "probe", "test")


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    dev: pd.DataFrame
    probe: pd.DataFrame
    test: pd.DataFrame
    labels: list[str]
    stats: dict[str, Any]


def row_hashes(df: pd.DataFrame) -> list[str]:
    """A short hash of every example's content (text, pair, label), in df's order: what a job
    read, comparable across splits and files (16 hex digits of sha256)."""
    import hashlib

    cols = [c for c in (TEXT, PAIR, LABEL) if c in df]
    return [hashlib.sha256("\x1f".join(map(str, row)).encode()).hexdigest()[:16] for row in df[cols].itertuples(index=False)]


def _decode(dataset: str, data: bytes, encoding: str, where: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise DataError(
            dataset,
            f"{where} is not valid {encoding} (byte {e.start}: {data[e.start : e.start + 4]!r}); set source.encoding (e.g. latin-1) to the file's encoding",
        ) from None


def parse_table(dataset: str, data: bytes, path: str, fmt: str, encoding: str) -> pd.DataFrame:
    """One file's rows; compression (.gz, .bz2, .xz, .zip) is inferred from the name."""
    name = path.split("!")[-1]
    compression = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}.get(Path(name).suffix)
    if compression:
        import bz2
        import gzip
        import lzma

        data = {"gzip": gzip.decompress, "bz2": bz2.decompress, "xz": lzma.decompress}[compression](data)
    text = _decode(dataset, data, encoding, path)
    if fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        return pd.DataFrame(rows)
    sep = "\t" if fmt == "tsv" else ","
    return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[""])


def read_text_folders(dataset: str, root: Path | None, folder: str, encoding: str) -> pd.DataFrame:
    """One example per file, the label being the file's first-level folder (column `folder`)."""
    rows = []
    for rel, data in sources.iter_folder(root, folder):
        if "/" not in rel:
            continue
        label, _ = rel.split("/", 1)
        rows.append({"folder": label, TEXT: _decode(dataset, data, encoding, f"{folder}/{rel}")})
    return pd.DataFrame(rows)


def load_raw(dataset: str, entry: Mapping[str, Any], archive: Path | None) -> dict[str, pd.DataFrame]:
    """The source's parts ({'train', 'test'} or {'all'}) as raw tables."""
    source = entry["source"]
    if source.get("hub"):
        import datasets as hf

        revision = source.get("revision")
        if revision == sources.RESOLVE:
            # no commit could be pinned offline: take main's commit now, load exactly that, and
            # record it (info.json's source.resolved_revision; check_sources --pin writes it back)
            revision = sources.resolved_hub_revision(source["hub"], revision)
            if revision is None:
                raise DataError(dataset, f"revision: resolve needs the hub to name {source['hub']}'s current commit, and the hub cannot be reached")
        parts = {}
        for part, split in source["splits"].items():
            ds = hf.load_dataset(source["hub"], source.get("name"), split=split, revision=revision)
            parts[part] = ds.to_pandas()
        return parts
    fmt, encoding = source["format"], source.get("encoding", "utf-8")
    parts = {}
    for part, path in source["files"].items():
        if fmt == "text_folders":
            parts[part] = read_text_folders(dataset, archive, path, encoding)
        else:
            try:
                data = sources.read_bytes(archive, path)
            except FileNotFoundError as e:
                raise DataError(dataset, f"source file not found: {e}") from None
            parts[part] = parse_table(dataset, data, path, fmt, encoding)
    return parts


def _join_fields(dataset: str, df: pd.DataFrame, fields: str | Sequence[str]) -> pd.Series:
    names = [fields] if isinstance(fields, str) else list(fields)
    missing = [f for f in names if f not in df.columns]
    if missing:
        raise DataError(dataset, f"text field(s) {missing} not in the data; columns are {list(df.columns)}")
    cols = [df[f].astype("string").str.strip() for f in names]
    joined = cols[0]
    for col in cols[1:]:
        joined = joined.str.cat(col, sep=" ", na_rep="").str.strip()
    return joined.mask(joined == "")


def to_examples(dataset: str, df: pd.DataFrame, entry: Mapping[str, Any], labels: Sequence[str] | None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Raw table -> columns text, (text_pair), label (the declared label name, a string)."""
    label_field = entry["label"]
    if label_field not in df.columns:
        raise DataError(dataset, f"label field {label_field!r} not in the data; columns are {list(df.columns)}")
    out = pd.DataFrame({TEXT: _join_fields(dataset, df, entry["text"])})
    if entry.get("text_pair"):
        out[PAIR] = _join_fields(dataset, df, entry["text_pair"])
    raw = df[label_field]
    mapping = {str(k): str(v) for k, v in (entry.get("label_map") or {}).items()}
    out[LABEL] = raw.map(lambda v: None if pd.isna(v) else mapping.get(str(v), str(v)))
    stats = {"rows": len(out)}
    text_cols = [TEXT, PAIR] if PAIR in out else [TEXT]
    blank = out[text_cols].isna().any(axis=1) | out[LABEL].isna()
    stats["dropped_missing"] = int(blank.sum())
    out = out[~blank]
    if labels is not None:
        unknown = ~out[LABEL].isin(labels)
        if unknown.any():
            found = sorted(out.loc[unknown, LABEL].unique())[:10]
            if entry.get("other_labels", "error") == "error":
                raise DataError(
                    dataset,
                    f"{int(unknown.sum())} rows have labels outside the declared set {list(labels)}: {found}; "
                    "fix `labels`/`label_map`, or set other_labels: drop to discard them",
                )
            stats["dropped_other_labels"] = int(unknown.sum())
            out = out[~unknown]
    return out.reset_index(drop=True), stats


def _key(df: pd.DataFrame) -> pd.Series:
    norm = df[TEXT].str.split().str.join(" ")
    if PAIR in df:
        norm = norm + "\x1f" + df[PAIR].str.split().str.join(" ")
    return norm


def deduplicate(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep one copy of each (text, pair, label); drop texts that carry two labels."""
    key = _key(df)
    n_labels = df.groupby(key)[LABEL].transform("nunique")
    conflicting = n_labels > 1
    kept = df[~conflicting]
    dup = _key(kept).duplicated()
    stats = {"dropped_conflicting_labels": int(conflicting.sum()), "dropped_duplicates": int(dup.sum())}
    return kept[~dup].reset_index(drop=True), stats


def stratified_split(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (rest, held out) with `fraction` of every label held out (rounded,
    at least one per label when the label has two or more examples). Both sorted."""
    held = []
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        k = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        held.append(rng.permutation(idx)[:k])
    held_idx = np.sort(np.concatenate(held)) if held else np.array([], dtype=int)
    rest = np.setdiff1d(np.arange(len(labels)), held_idx)
    return rest, held_idx


def stratified_subsample(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """At most n indices, label proportions kept (largest remainders), sorted."""
    if n >= len(labels):
        return np.arange(len(labels))
    values, counts = np.unique(labels, return_counts=True)
    exact = counts * n / len(labels)
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take), kind="stable")[: n - take.sum()]:
        take[i] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == v))[:t] for v, t in zip(values, take)]
    return np.sort(np.concatenate(chosen))


def _cap(df: pd.DataFrame, cap: int | None, rng: np.random.Generator) -> pd.DataFrame:
    if cap is None or len(df) <= cap:
        return df
    return df.iloc[stratified_subsample(df[LABEL].to_numpy(), cap, rng)].reset_index(drop=True)


def make_splits(dataset: str, parts: Mapping[str, pd.DataFrame], entry: Mapping[str, Any], settings: Mapping[str, Any]) -> Splits:
    """Clean the raw parts and cut the train/dev/test splits (module docstring).

    A size-experiment variant (`size_of` set) draws its splits with its parent's seed: the same
    dev and test, and a train subsample of the parent's train split."""
    declared = [str(x) for x in entry["labels"]] if entry.get("labels") else None
    stats: dict[str, Any] = {}
    cleaned = {}
    for part, raw in parts.items():
        examples, s = to_examples(dataset, raw, entry, declared)
        examples, d = deduplicate(examples)
        cleaned[part] = examples
        stats[part] = {**s, **d, "kept": len(examples)}
    labels = declared or sorted(set().union(*(set(df[LABEL]) for df in cleaned.values())))
    rng = np.random.default_rng(derive_seed(entry.get("size_of") or dataset, settings["split_seed"], "split"))

    if "all" in cleaned:
        pool = cleaned["all"]
        _check_labels(dataset, pool, labels, settings["min_examples_per_label"], "the data")
        rest, held = stratified_split(pool[LABEL].to_numpy(), settings["test_fraction"], rng)
        train, test = pool.iloc[rest].reset_index(drop=True), pool.iloc[held].reset_index(drop=True)
    else:
        train, test = cleaned["train"], cleaned.get("test")
        if test is None:
            rest, held = stratified_split(train[LABEL].to_numpy(), settings["test_fraction"], rng)
            train, test = train.iloc[rest].reset_index(drop=True), train.iloc[held].reset_index(drop=True)
        leak = _key(train).isin(set(_key(test)))
        stats["dropped_train_in_test"] = int(leak.sum())
        train = train[~leak].reset_index(drop=True)
        _check_labels(dataset, train, labels, settings["min_examples_per_label"], "the train split")

    train, dev = carve(train, settings["dev_fraction"], settings["max_dev"], rng)
    train, probe = carve_probe(dataset, train, settings, rng)
    train = _cap(train, settings["max_train"], rng)
    dev = _cap(dev, settings["max_dev"], rng)
    test = _cap(test, settings["max_test"], rng)
    for split_name, split in (("train", train), ("dev", dev), ("probe", probe), ("test", test)):
        if split[LABEL].nunique() < 2:
            raise DataError(dataset, f"the {split_name} split has {split[LABEL].nunique()} distinct label(s) after cleaning; a classifier needs two")
    stats["sizes"] = {"train": len(train), "dev": len(dev), "probe": len(probe), "test": len(test)}
    return Splits(train, dev, probe, test, labels, stats)


def carve_probe(dataset: str, train: pd.DataFrame, settings: Mapping[str, Any], rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, probe): a seeded stratified `probe_fraction` of train, at most `max_probe`
    examples, becomes the probe split (module docstring). Fewer than `min_probe` examples stops
    the run, naming the settings that fix it."""
    rest, probe = carve(train, settings["probe_fraction"], settings["max_probe"], rng)
    if len(probe) < settings["min_probe"]:
        raise DataError(
            dataset,
            f"the probe split would hold {len(probe)} examples (probe_fraction {settings['probe_fraction']} of {len(train)} train examples), "
            f"fewer than min_probe {settings['min_probe']}: raise this dataset's probe_fraction, or lower data.min_probe "
            "(a probe fitted on fewer examples measures its own noise)",
        )
    return rest, probe


def carve(df: pd.DataFrame, fraction: float, cap: int | None, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, held out): a seeded stratified `fraction` of `df`, at most `cap` examples, held
    out (the dev and the probe split are carved so from train)."""
    if cap is not None:
        fraction = min(fraction, cap / len(df))
    rest, held = stratified_split(df[LABEL].to_numpy(), fraction, rng)
    return df.iloc[rest].reset_index(drop=True), df.iloc[held].reset_index(drop=True)


def _check_labels(dataset: str, df: pd.DataFrame, labels: Sequence[str], minimum: int, where: str) -> None:
    if df.empty:
        raise DataError(dataset, f"{where} has no usable examples after cleaning")
    counts = df[LABEL].value_counts()
    present = [lab for lab in labels if counts.get(lab, 0) > 0]
    if len(present) < 2:
        raise DataError(dataset, f"{where} has only {len(present)} label(s) ({present}); a classifier needs two")
    rare = {lab: int(counts.get(lab, 0)) for lab in labels if counts.get(lab, 0) < minimum}
    if rare:
        raise DataError(dataset, f"labels with fewer than {minimum} examples in {where}: {rare}; drop them from `labels` or lower data.min_examples_per_label")


def encode_labels(df: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """Label names -> class ids in the declared order."""
    ids = {name: i for i, name in enumerate(labels)}
    return df.assign(**{LABEL: df[LABEL].map(ids).astype("int64")})


def save_split(df: pd.DataFrame, labels: Sequence[str], path: str | Path) -> None:
    """Write one split as Parquet through HF datasets, labels as a ClassLabel feature."""
    import datasets as hf

    features = {TEXT: hf.Value("string"), LABEL: hf.ClassLabel(names=list(labels))}
    if PAIR in df:
        features[PAIR] = hf.Value("string")
    ds = hf.Dataset.from_pandas(encode_labels(df, labels), features=hf.Features(features), preserve_index=False)
    ds.to_parquet(str(path))


def load_split(path: str | Path) -> pd.DataFrame:
    """A split written by save_split (columns text, [text_pair], label as class id)."""
    return pd.read_parquet(path)
