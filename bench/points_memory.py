"""Point accumulation on roberta-base-shaped bodies on CPU: chunked (each checkpoint read once
per chunk) vs one point at a time (each checkpoint read once per point), in the same run.

Four finetuned-like checkpoints of RoBERTa-base's shape (124 M body parameters, random, written
as model.safetensors with their checksums.json, as the workflow's model folders are) and eight
points, each an equal combination of all four (a hull point's pattern). Each mode runs in its own
subprocess so its peak RSS is its own; the chunked mode is given the memory
points_memory_mb(body, chunk) says it needs and its chunk is derived from that memory
(points_chunk), as the loss jobs do. Prints the checkpoint reads, seconds, peak RSS against the
prediction, and a final JSON line; ratio = chunked time / per-point time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

POINTS, MODELS = 8, 4


def body_shapes(tiny: bool) -> dict[str, tuple[int, ...]]:
    from transformers import RobertaConfig, RobertaModel

    cfg = RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=1000) if tiny else RobertaConfig()
    with torch.device("meta"):
        model = RobertaModel(cfg, add_pooling_layer=False)
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def write_models(folder: Path, tiny: bool) -> None:
    from safetensors.torch import save_file

    from weightspace.io import sha256_file, write_json

    g = torch.Generator().manual_seed(0)
    shapes = body_shapes(tiny)
    pretrained = {n: torch.randn(s, generator=g) * 0.02 for n, s in shapes.items()}
    save_file(pretrained, str(folder / "pretrained.safetensors"))
    for i in range(MODELS):
        out = folder / f"m{i}"
        out.mkdir()
        save_file({f"roberta.{n}": t + 1e-3 * torch.randn(t.shape, generator=g) for n, t in pretrained.items()}, str(out / "model.safetensors"))
        write_json(out / "checksums.json", {"model.safetensors": sha256_file(out / "model.safetensors")})


def run_mode(folder: Path, chunk_limit: int, memory_mb: float | None) -> dict:
    from safetensors.torch import load_file

    from weightspace import weights
    from weightspace.points import Point, accumulate, points_chunk

    torch.set_num_threads(2)
    pretrained = load_file(str(folder / "pretrained.safetensors"))
    body = sum(t.numel() for t in pretrained.values())
    chunk = points_chunk(body, chunk_limit, memory_mb)
    models = [str(folder / f"m{i}") for i in range(MODELS)]
    points = [Point.combination(models, [1.0 / MODELS] * MODELS) for _ in range(POINTS)]
    reads = []
    real = weights.checkpoint_body
    weights.checkpoint_body = lambda f, names, prefix=None: (reads.append(f), real(f, names, prefix))[1]
    buffers = [{n: torch.empty(t.shape, dtype=torch.float64) for n, t in pretrained.items()} for _ in range(chunk)]
    start = time.perf_counter()
    for lo in range(0, POINTS, chunk):
        accumulate(points[lo : lo + chunk], pretrained, "roberta.", None, buffers)
    seconds = time.perf_counter() - start
    return {
        "chunk": chunk,
        "reads": len(reads),
        "seconds": round(seconds, 2),
        "body_parameters": body,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--mode", nargs=3, help=argparse.SUPPRESS)  # folder, chunk limit, memory_mb|none
    args = parser.parse_args()
    if args.mode:
        folder, limit, memory = args.mode
        print(json.dumps(run_mode(Path(folder), int(limit), None if memory == "none" else float(memory))))
        return
    from weightspace.points import points_memory_mb

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_models(folder, args.tiny)
        body = sum(int(torch.tensor(s).prod()) for s in body_shapes(args.tiny).values())

        def mode(limit: int, memory: float | None) -> dict:
            cmd = [sys.executable, __file__, "--mode", str(folder), str(limit), "none" if memory is None else str(memory)]
            return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])

        predicted = points_memory_mb(body, 4)
        chunked = mode(8, predicted)  # the memory for a chunk of 4: the job derives chunk 4 from it
        single = mode(1, None)
    for name, row in (("chunked", chunked), ("per point", single)):
        print(f"{name}: chunk {row['chunk']}, {row['reads']} checkpoint reads, {row['seconds']} s, peak RSS {row['peak_rss_mb']} MB", file=sys.stderr)
    print(f"predicted memory for chunk 4: {predicted} MB (a job's request; includes {1500} MB for the feature model and data, not used here)", file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "points_memory",
                "ratio": round(chunked["seconds"] / single["seconds"], 3),
                "body_parameters": body,
                "chunked": chunked,
                "per_point": single,
                "predicted_mb_chunk4": predicted,
                "rss_within_prediction": chunked["peak_rss_mb"] <= predicted,
            }
        )
    )


if __name__ == "__main__":
    main()
