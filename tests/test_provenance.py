"""Provenance records: hashes of inputs, verification, lineage printing."""

from __future__ import annotations

import io
import json

from weightspace.io import sha256_file, write_json
from weightspace.lineage import print_lineage
from weightspace.provenance import digest, file_records, verify, write_provenance


def test_records_reuse_hashes_recorded_by_the_writer(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "shard-00000.parquet").write_bytes(b"x" * 10)
    write_json(folder / "manifest.json", {"shards": [{"file": "shard-00000.parquet", "sha256": "recorded"}]})
    recs = {r["path"].split("/")[-1]: r for r in file_records([folder])}
    assert recs["shard-00000.parquet"]["sha256"] == "recorded"
    assert recs["manifest.json"]["sha256"] == sha256_file(folder / "manifest.json")


def test_verify_detects_a_changed_input_and_lineage_reports_it(tmp_path):
    src = tmp_path / "input.csv"
    src.write_text("a,b\n1,2\n")
    out = tmp_path / "table.csv"
    out.write_text("x\n")
    record = write_provenance(out, "some_rule", [src], {"k": 1}, tmp_path)
    assert record["config_sha256"] == digest({"k": 1})
    assert verify(record) == []
    src.write_text("a,b\n1,3\n")
    assert verify(record) == [f"{src}: sha256 differs from the recorded one"]
    buf = io.StringIO()
    assert print_lineage(out, buf, check=True) == 1
    assert "made by rule some_rule" in buf.getvalue() and "differs" in buf.getvalue()
    assert json.loads((tmp_path / "table.csv.provenance.json").read_text())["git_commit"] is None  # not a git checkout


def test_a_datasets_source_is_recorded_by_archive_hash_or_hub_commit(tmp_path):
    from weightspace.sources import source_record

    archive = tmp_path / "pkg-1.0-py3-none-any.whl"
    archive.write_bytes(b"PK archive bytes")
    rec = source_record({"package": "pkg==1.0", "files": {"all": "pkg/data.csv"}}, archive)
    assert rec == {"files": {"all": "pkg/data.csv"}, "package": "pkg==1.0", "archive": str(archive), "archive_sha256": sha256_file(archive)}
    local = tmp_path / "data.csv"
    local.write_text("text,label\na,b\n")
    assert source_record({"files": {"all": str(local)}, "format": "csv"}, None)["files_sha256"] == {"all": sha256_file(local)}
    commit = "0123456789abcdef0123456789abcdef01234567"
    hub = source_record({"hub": "nyu-mll/glue", "name": "sst2", "revision": commit, "splits": {"train": "train"}}, None)
    assert hub["resolved_revision"] == commit and hub["hub"] == "nyu-mll/glue"  # a pinned commit resolves to itself, offline
