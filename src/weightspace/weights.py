"""A model's body as one long float32 vector in Parquet shards, readable by position range.

The weight vector of a model (methods.md §2) is its body only: what lies below the
classification head, i.e. embeddings and encoder. The head is left out because label sets
differ; a BERT-style pooler (dense + tanh on [CLS]) only feeds the classifier, so it belongs to
the head, as RoBERTa's dense + tanh layer does (`in_body`, the one definition used everywhere). Task vectors are tau = theta_finetuned - theta_pretrained over that vector.

On-disk layout of one model's folder (plain pyarrow reads every file):
- `shard-00000.parquet`, ...: one non-nullable float32 column `weight`; shard i holds positions
  [i*shard_size, (i+1)*shard_size); every row group holds exactly `chunk_size` positions (the
  last one fewer), so a position range maps to a few row groups and nothing else is read.
  Plain encoding, no compression (float32 weights barely compress), page checksums on.
  Each file's key-value metadata `weightspace` carries the model's identity and the shard's range.
- `index.parquet`: parameter name -> offset, numel, shape, dtype (the checkpoint's dtype; values
  are stored as float32, which holds fp16/bf16/fp32 exactly).
- `manifest.json`: the same identity, the shards with their ranges, their sha256 and the sha256
  of every row group's float32 values (checked by FlatWeights on every read: weightspace.integrity).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .integrity import CorruptFile, chunk_digest, verify_checkpoint, verify_file
from .io import atomic_path, sha256_file, write_json
from .sizing import parameter_count  # noqa: F401 (re-exported: the rules and tests read it here)

FORMAT_VERSION = 1
COLUMN = "weight"
META_KEY = b"weightspace"
INDEX_FILE = "index.parquet"
MANIFEST_FILE = "manifest.json"


def _seq_cls_class(config: Any) -> type:
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    return MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(config)]


# Modules inside the transformer's base model that only feed the classification head.
HEAD_MODULES = ("pooler",)


def in_body(name: str) -> bool:
    """Whether a parameter of the base model (name relative to it, e.g. `pooler.dense.weight`,
    `encoder.layer.0...`) belongs to the body. The pooler is part of the head: in BERT-style
    models it only feeds the classifier, like the dense + tanh layer of RoBERTa's head."""
    return name.split(".", 1)[0] not in HEAD_MODULES


def body_prefix(model_dir: str | Path) -> str:
    """The attribute name of the body inside the sequence-classification model (`bert`, `roberta`, ...).
    A finetuned model folder records it in metrics.json (read in milliseconds); any other folder
    asks transformers (seconds: it imports the model's class)."""
    metrics = Path(model_dir) / "metrics.json"
    if metrics.is_file():
        recorded = json.loads(metrics.read_text()).get("body_prefix")
        if recorded:
            return str(recorded)
    from transformers import AutoConfig

    return _seq_cls_class(AutoConfig.from_pretrained(model_dir)).base_model_prefix


def pretrained_body(model_dir: str | Path) -> dict[str, torch.Tensor]:
    """The body every finetune starts from: the base model loaded exactly as `finetune` loads
    it (sequence-classification class), its body parameters (`in_body`) in their canonical order."""
    from transformers import AutoModelForSequenceClassification

    verify_checkpoint(model_dir, required=False)  # resources/base_model records its sha256
    model, info = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2, output_loading_info=True, dtype=torch.float32)
    prefix = model.base_model_prefix + "."
    missing = [k for k in info["missing_keys"] if k.startswith(prefix)]
    if missing:
        # Such parameters would be drawn at random by each finetune: no common reference.
        raise ValueError(f"{model_dir}: the checkpoint lacks body parameters {missing[:5]}; task vectors need them pretrained")
    return {name: p.detach() for name, p in model.base_model.named_parameters() if in_body(name)}


def checkpoint_body(model_dir: str | Path, names: Sequence[str], prefix: str | None = None) -> dict[str, torch.Tensor]:
    """The body tensors `names` of a finetuned sequence-classification checkpoint
    (memory-mapped from model.safetensors, after checking it against its checksums.json). `prefix` is the body's key prefix (e.g. "bert.");
    by default it is read from the folder's config.json."""
    from safetensors import safe_open

    verify_checkpoint(model_dir)
    prefix = body_prefix(model_dir) + "." if prefix is None else prefix
    out: dict[str, torch.Tensor] = {}
    with safe_open(str(Path(model_dir) / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
        missing = [n for n in names if prefix + n not in keys]
        if missing:
            raise KeyError(f"{model_dir}: body parameters missing from the checkpoint: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        for name in names:
            out[name] = f.get_tensor(prefix + name)
    return out


@dataclass(frozen=True)
class Param:
    name: str
    offset: int
    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def make_index(body: Mapping[str, torch.Tensor]) -> list[Param]:
    """Positions of each parameter in the flat vector, in the body's order."""
    index, offset = [], 0
    for name, t in body.items():
        index.append(Param(name, offset, tuple(t.shape), str(t.dtype).removeprefix("torch.")))
        offset += t.numel()
    return index


def index_table(index: Sequence[Param]) -> pa.Table:
    return pa.table(
        {
            "name": [p.name for p in index],
            "offset": pa.array([p.offset for p in index], pa.int64()),
            "numel": pa.array([p.numel for p in index], pa.int64()),
            "shape": pa.array([list(p.shape) for p in index], pa.list_(pa.int64())),
            "dtype": [p.dtype for p in index],
        }
    )


def read_index(folder: str | Path) -> list[Param]:
    t = pq.read_table(Path(folder) / INDEX_FILE).to_pylist()
    return [Param(r["name"], r["offset"], tuple(r["shape"]), r["dtype"]) for r in t]


def _flat_pieces(body: Mapping[str, torch.Tensor], index: Sequence[Param]) -> Iterator[np.ndarray]:
    for p in index:
        t = body[p.name]
        if tuple(t.shape) != p.shape:
            raise ValueError(f"parameter {p.name}: shape {tuple(t.shape)} differs from the index's {p.shape}")
        yield t.detach().to("cpu").reshape(-1).to(torch.float32).numpy()


def _shards(pieces: Iterable[np.ndarray], total: int, shard_size: int) -> Iterator[np.ndarray]:
    """Re-cut a stream of flat arrays into consecutive shard_size arrays (memory: one shard)."""
    buf = np.empty(min(shard_size, total), dtype=np.float32)
    filled = 0
    for piece in pieces:
        pos = 0
        while pos < len(piece):
            take = min(len(buf) - filled, len(piece) - pos)
            buf[filled : filled + take] = piece[pos : pos + take]
            filled += take
            pos += take
            if filled == len(buf):
                yield buf
                total -= filled
                filled = 0
                if total:
                    buf = np.empty(min(shard_size, total), dtype=np.float32)
    if filled:
        yield buf[:filled]


def write_flat(
    body: Mapping[str, torch.Tensor],
    index: Sequence[Param],
    out_dir: str | Path,
    identity: Mapping[str, Any],
    chunk_size: int,
    shard_size: int,
) -> dict[str, Any]:
    """Write the body as shards + index + manifest into `out_dir` (atomically). Returns the manifest."""
    if shard_size % chunk_size:
        raise ValueError("shard_size must be a multiple of chunk_size")
    from concurrent.futures import ThreadPoolExecutor

    total = sum(p.numel for p in index)
    schema = pa.schema([pa.field(COLUMN, pa.float32(), nullable=False)])
    shards = []
    # Hashing a shard (its row groups' values and the closed file) overlaps with writing the
    # next one (both release the GIL); `_shards` gives every shard a fresh buffer.
    with atomic_path(out_dir) as tmp, ThreadPoolExecutor(max_workers=1) as hasher:
        tmp.mkdir()
        start = 0
        for i, values in enumerate(_shards(_flat_pieces(body, index), total, shard_size)):
            name = f"shard-{i:05d}.parquet"
            meta = {
                **identity,
                "format_version": FORMAT_VERSION,
                "shard": i,
                "start": start,
                "stop": start + len(values),
                "num_positions": total,
                "chunk_size": chunk_size,
            }
            with pq.ParquetWriter(
                tmp / name,
                schema.with_metadata({META_KEY: json.dumps(meta).encode()}),
                compression="none",
                use_dictionary=False,
                column_encoding={COLUMN: "PLAIN"},
                write_statistics=False,
                write_page_checksum=True,
                data_page_size=1 << 20,
            ) as writer:
                writer.write_table(pa.table({COLUMN: pa.array(values, pa.float32())}, schema=schema), row_group_size=chunk_size)
            chunks = hasher.submit(lambda v=values: [chunk_digest(v[lo : lo + chunk_size]) for lo in range(0, len(v), chunk_size)])
            shards.append({"file": name, "start": start, "stop": start + len(values), "sha256": hasher.submit(sha256_file, tmp / name), "chunk_sha256": chunks})
            start += len(values)
        for shard in shards:
            shard["sha256"] = shard["sha256"].result()
            shard["chunk_sha256"] = shard["chunk_sha256"].result()
        pq.write_table(index_table(index), tmp / INDEX_FILE)
        manifest = {
            **identity,
            "format_version": FORMAT_VERSION,
            "num_positions": total,
            "chunk_size": chunk_size,
            "shard_size": shard_size,
            "shards": shards,
            "index_sha256": sha256_file(tmp / INDEX_FILE),
        }
        write_json(tmp / MANIFEST_FILE, manifest)
    return manifest


class FlatWeights:
    """Reader of one model's flattened body: position ranges, tensors, identity."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        try:
            with open(self.folder / MANIFEST_FILE) as f:
                self.manifest: dict[str, Any] = json.load(f)
        except (OSError, ValueError) as e:
            raise CorruptFile(self.folder / MANIFEST_FILE, str(self.folder), f"manifest unreadable ({e})") from None
        self.num_positions: int = self.manifest["num_positions"]
        self.chunk_size: int = self.manifest["chunk_size"]
        self._starts = np.array([s["start"] for s in self.manifest["shards"]], dtype=np.int64)
        self._files: dict[int, pq.ParquetFile] = {}
        self._index: list[Param] | None = None

    @property
    def model(self) -> str:
        return str(self.manifest.get("model_id") or self.folder)

    def _file(self, i: int) -> pq.ParquetFile:
        if i not in self._files:
            path = self.folder / self.manifest["shards"][i]["file"]
            try:
                self._files[i] = pq.ParquetFile(path, page_checksum_verification=True)
            except FileNotFoundError:
                raise CorruptFile(path, self.model, "the shard is missing") from None
            except (OSError, pa.ArrowException) as e:
                raise CorruptFile(path, self.model, f"not a readable Parquet file ({e})") from None
        return self._files[i]

    def _row_groups(self, i: int, first: int, last: int) -> np.ndarray:
        """Row groups first..last of shard i, each checked against its recorded sha256."""
        shard = self.manifest["shards"][i]
        path = self.folder / shard["file"]
        try:
            table = self._file(i).read_row_groups(list(range(first, last + 1)), columns=[COLUMN], use_threads=False)
        except CorruptFile:
            raise
        except (OSError, pa.ArrowException) as e:
            raise CorruptFile(path, self.model, f"row groups {first}-{last} unreadable ({e})") from None
        values = table.column(0).to_numpy()
        digests = shard.get("chunk_sha256")
        if digests is not None:
            for g in range(first, last + 1):
                lo = (g - first) * self.chunk_size
                chunk = values[lo : lo + self.chunk_size]
                if chunk_digest(np.ascontiguousarray(chunk)) != digests[g]:
                    raise CorruptFile(path, self.model, f"row group {g} does not match the sha256 recorded when it was written")
        return values

    def read(self, start: int, stop: int) -> np.ndarray:
        """Positions [start, stop) as a float32 array; reads only the row groups that hold them."""
        if not 0 <= start <= stop <= self.num_positions:
            raise IndexError(f"range [{start}, {stop}) outside [0, {self.num_positions}) of {self.folder}")
        out = np.empty(stop - start, dtype=np.float32)
        pos = start
        while pos < stop:
            i = int(np.searchsorted(self._starts, pos, side="right") - 1)
            shard = self.manifest["shards"][i]
            end = min(stop, shard["stop"])
            first, last = (pos - shard["start"]) // self.chunk_size, (end - 1 - shard["start"]) // self.chunk_size
            values = self._row_groups(i, first, last)
            lo = pos - shard["start"] - first * self.chunk_size
            out[pos - start : end - start] = values[lo : lo + end - pos]
            pos = end
        return out

    def vector(self) -> np.ndarray:
        return self.read(0, self.num_positions)

    @property
    def index(self) -> list[Param]:
        if self._index is None:
            if "index_sha256" in self.manifest:
                verify_file(self.folder / INDEX_FILE, self.manifest["index_sha256"], self.model)
            self._index = read_index(self.folder)
        return self._index

    def tensor(self, name: str) -> torch.Tensor:
        """One parameter, in its original shape and dtype."""
        for p in self.index:
            if p.name == name:
                values = torch.from_numpy(self.read(p.offset, p.offset + p.numel)).reshape(p.shape)
                return values.to(getattr(torch, p.dtype))
        raise KeyError(f"{name} is not a body parameter of {self.folder}")

    def body(self) -> dict[str, torch.Tensor]:
        return {p.name: self.tensor(p.name) for p in self.index}
