"""Flattened bodies in Parquet shards: exact round trips and range reads."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from weightspace.weights import FlatWeights, make_index, write_flat

IDENTITY = {"model_id": "toy-s0", "dataset": "toy", "families": ["f"], "seed": 0, "base_model": "tiny", "checkpoint_sha256": "0" * 64}


def _body(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "embeddings.weight": torch.randn(37, 11, generator=g),
        "layer.0.bias": torch.randn(11, generator=g),
        "layer.0.half": torch.randn(5, 7, generator=g).to(torch.float16),
        "layer.0.bf": torch.randn(300, generator=g).to(torch.bfloat16),
        "norm.weight": torch.randn(1, generator=g),
    }


@pytest.mark.parametrize("chunk,shard", [(1024, 1024), (1024, 2048), (4096, 4096)])
def test_round_trip_is_exact_with_dtypes_and_shapes(tmp_path, chunk, shard):
    body = _body()
    index = make_index(body)
    manifest = write_flat(body, index, tmp_path / "m", IDENTITY, chunk, shard)
    total = sum(t.numel() for t in body.values())
    assert manifest["num_positions"] == total
    assert len(manifest["shards"]) == -(-total // shard)
    fw = FlatWeights(tmp_path / "m")
    for name, t in body.items():
        back = fw.tensor(name)
        assert back.dtype == t.dtype and back.shape == t.shape
        assert torch.equal(back, t)
    expected = np.concatenate([t.float().reshape(-1).numpy() for t in body.values()])
    assert np.array_equal(fw.vector(), expected)


def test_any_range_equals_the_slice(tmp_path):
    body = {"w": torch.arange(10_000, dtype=torch.float32)}
    write_flat(body, make_index(body), tmp_path / "m", IDENTITY, 1024, 3072)
    fw = FlatWeights(tmp_path / "m")
    rng = np.random.default_rng(0)
    full = np.arange(10_000, dtype=np.float32)
    for _ in range(50):
        a, b = sorted(rng.integers(0, 10_001, 2))
        assert np.array_equal(fw.read(a, b), full[a:b])
    assert np.array_equal(fw.read(3071, 3073), full[3071:3073])  # across a shard boundary
    with pytest.raises(IndexError):
        fw.read(0, 10_001)


def test_layout_is_plain_parquet_with_fixed_row_groups_and_metadata(tmp_path):
    body = {"w": torch.arange(5000, dtype=torch.float32)}
    write_flat(body, make_index(body), tmp_path / "m", IDENTITY, 1024, 4096)
    pf = pq.ParquetFile(tmp_path / "m" / "shard-00000.parquet")
    assert [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)] == [1024] * 4
    assert pf.schema_arrow.field("weight").type == "float"
    meta = json.loads(pf.schema_arrow.metadata[b"weightspace"])
    assert meta["model_id"] == "toy-s0" and meta["start"] == 0 and meta["stop"] == 4096 and meta["num_positions"] == 5000
    second = pq.read_table(tmp_path / "m" / "shard-00001.parquet")
    assert second.column("weight").to_pylist() == list(range(4096, 5000))
    index = pq.read_table(tmp_path / "m" / "index.parquet").to_pylist()
    assert index == [{"name": "w", "offset": 0, "numel": 5000, "shape": [5000], "dtype": "float32"}]


def test_range_read_touches_only_needed_row_groups(tmp_path, monkeypatch):
    body = {"w": torch.arange(8192, dtype=torch.float32)}
    write_flat(body, make_index(body), tmp_path / "m", IDENTITY, 1024, 8192)
    fw = FlatWeights(tmp_path / "m")
    asked = []
    real = pq.ParquetFile.read_row_groups
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", lambda self, rgs, **kw: asked.append(list(rgs)) or real(self, rgs, **kw))
    fw.read(1100, 1200)
    fw.read(2000, 2100)  # crosses the row-group boundary at 2048
    assert asked == [[1], [1, 2]]


def test_shape_mismatch_with_index_is_an_error(tmp_path):
    body = _body()
    index = make_index(body)
    other = {**body, "layer.0.bias": torch.zeros(12)}
    with pytest.raises(ValueError, match="layer.0.bias"):
        write_flat(other, index, tmp_path / "m", IDENTITY, 1024, 1024)
    assert not (tmp_path / "m").exists()  # nothing half-written


def _rewrite_row_group_value(folder, shard: str, position: int, value: float) -> None:
    """Re-encode a shard with one value changed: valid Parquet (CRCs recomputed), wrong weights."""
    table = pq.read_table(folder / shard)
    values = table.column(0).to_numpy().copy()
    values[position] = value
    meta = pq.ParquetFile(folder / shard).schema_arrow.metadata
    import pyarrow as pa

    pq.write_table(pa.table({"weight": values}).replace_schema_metadata(meta), folder / shard, row_group_size=1024, write_page_checksum=True)


def test_a_valid_but_altered_row_group_is_caught_by_its_recorded_sha256(tmp_path):
    from weightspace.integrity import CorruptFile

    body = {"w": torch.arange(4096, dtype=torch.float32)}
    write_flat(body, make_index(body), tmp_path / "m", IDENTITY, 1024, 4096)
    _rewrite_row_group_value(tmp_path / "m", "shard-00000.parquet", 3000, -1.0)
    fw = FlatWeights(tmp_path / "m")
    assert fw.read(0, 2048)[5] == 5.0  # untouched row groups still read
    with pytest.raises(CorruptFile, match=r"shard-00000.parquet \(model toy-s0\): row group 2 does not match"):
        fw.read(2048, 3072)


def test_a_truncated_shard_names_file_and_model(tmp_path):
    from weightspace.integrity import CorruptFile

    body = _body()
    write_flat(body, make_index(body), tmp_path / "m", IDENTITY, 1024, 4096)
    path = tmp_path / "m" / "shard-00000.parquet"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptFile, match=r"corrupt file .*shard-00000.parquet \(model toy-s0\): not a readable Parquet file"):
        FlatWeights(tmp_path / "m").vector()


def test_checkpoint_checksums_are_verified(tmp_path):
    from safetensors.torch import save_file

    from weightspace.integrity import CorruptFile, verify_checkpoint
    from weightspace.io import sha256_file, write_json

    folder = tmp_path / "results/models/toy/seed3"
    folder.mkdir(parents=True)
    save_file({"bert.w": torch.ones(10)}, str(folder / "model.safetensors"))
    write_json(folder / "metrics.json", {"dataset": "toy", "seed": 3})
    with pytest.raises(CorruptFile, match="checksum record is missing"):
        verify_checkpoint(folder)
    verify_checkpoint(folder, required=False)
    write_json(folder / "checksums.json", {"model.safetensors": sha256_file(folder / "model.safetensors")})
    verify_checkpoint(folder)
    save_file({"bert.w": torch.zeros(10)}, str(folder / "model.safetensors"))
    with pytest.raises(CorruptFile, match=r"model.safetensors \(model toy-s3\): sha256"):
        verify_checkpoint(folder)


def test_the_body_is_what_lies_below_the_head_pooler_excluded(tiny_assets, tmp_path):
    """BERT: the pooler feeds only the classifier, so it is head, not body. RoBERTa's
    classification model has no pooler (its head holds the dense + tanh layer): its body is
    the whole encoder, as before."""
    from transformers import AutoModelForSequenceClassification, RobertaConfig, RobertaModel

    from weightspace.weights import in_body, pretrained_body

    bert = pretrained_body(tiny_assets["model"])
    full = AutoModelForSequenceClassification.from_pretrained(tiny_assets["model"], num_labels=2).base_model
    every = [k for k, _ in full.named_parameters()]
    assert any(k.startswith("pooler.") for k in every)
    assert list(bert) == [k for k in every if not k.startswith("pooler.")]
    assert not in_body("pooler.dense.weight") and in_body("encoder.layer.0.output.dense.weight") and in_body("embeddings.word_embeddings.weight")

    folder = tmp_path / "roberta"
    config = RobertaConfig(
        vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48, max_position_embeddings=40, type_vocab_size=1
    )
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(folder)  # like the hub's roberta-base: a pooler in the checkpoint
    roberta = pretrained_body(folder)
    seq = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    assert list(roberta) == [k for k, _ in seq.roberta.named_parameters()]  # nothing left out
    assert not any(k.startswith("pooler.") for k in roberta) and len(roberta) > 10
