"""The device check: every GPU path the lab will use, on a roberta-base-shaped model.

Builds RoBERTa-base's architecture from its config with random weights (no download) and
synthetic token ids, then, section by section (each one's failure is recorded, not fatal):

- env: GPU model, torch/CUDA versions, whether bf16 is native, the attention kernel;
- determinism and resume (subprocesses, as a SLURM job would run): the same seed twice gives
  bitwise-identical weights, and a run SIGKILLed right after a checkpoint then rerun ends with
  the weights of the uninterrupted run, under fp16 (loss scaler) and bf16 autocast; padded
  batches of varied length, the case where attention's backward is non-deterministic unless
  determinism is enforced;
- throughput: examples/s and peak GPU memory of full finetuning and BitFit at batch 256 and 128
  (to bracket 40 GB cards), 256 tokens, bf16 and fp16, deterministic kernels as the workflow runs;
- features: examples/s of the generalized loss's feature extraction at batch 32 and 256;
- points: point accumulation (float64 combinations of checkpoints) on the GPU against the
  CPU on the same terms (bitwise-equal results are checked), and one generalized-loss
  evaluation end to end (score_points).

It prints progress to stderr and, last, one JSON line with everything ("ratio": the GPU's
point-accumulation speedup over the CPU, per term). `--tiny` runs a 2-layer, 32-wide model in
seconds (the test suite runs it on CPU). `--out FILE` also writes the JSON there, updated after
every section, so a run cut short still leaves what it measured.

    python bench/gpu_check.py --out gpu_check.json        # on a GPU node: about 4 minutes on an H200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

SIZES = {
    # roberta-base: 12 layers, hidden 768, 125 M parameters; the paper preset's batch and length
    "base": dict(
        hidden=768,
        layers=12,
        heads=12,
        inter=3072,
        vocab=50265,
        seq=256,
        batches=[256, 128],
        steps=8,
        det_batch=64,
        det_seq=128,
        det_steps=8,
        feat_n=2000,
        acc_points=8,
        acc_models=8,
        cpu_points=2,
        cpu_models=4,
    ),
    "tiny": dict(
        hidden=32,
        layers=2,
        heads=2,
        inter=64,
        vocab=1000,
        seq=16,
        batches=[8, 4],
        steps=3,
        det_batch=8,
        det_seq=16,
        det_steps=8,
        feat_n=64,
        acc_points=3,
        acc_models=3,
        cpu_points=2,
        cpu_models=3,
    ),
}
PAD, BOS, EOS = 1, 0, 2


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def model_config(sz: dict, num_labels: int = 3):
    from transformers import RobertaConfig

    return RobertaConfig(
        vocab_size=sz["vocab"],
        hidden_size=sz["hidden"],
        num_hidden_layers=sz["layers"],
        num_attention_heads=sz["heads"],
        intermediate_size=sz["inter"],
        max_position_embeddings=sz["seq"] + 4,
        type_vocab_size=1,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        num_labels=num_labels,
    )


def build_model(sz: dict, seed: int):
    from transformers import RobertaForSequenceClassification

    torch.manual_seed(seed)
    return RobertaForSequenceClassification(model_config(sz))


def token_data(n: int, seq: int, vocab: int, seed: int, fixed_length: bool):
    """Synthetic examples: <s> random tokens </s>, all `seq` long or of varied length."""
    from weightspace.batches import Encoded

    rng = np.random.default_rng(seed)
    lengths = np.full(n, seq) if fixed_length else rng.integers(seq // 4, seq + 1, n)
    ids = [np.concatenate([[BOS], rng.integers(3, vocab, k - 2), [EOS]]).astype(np.int64) for k in lengths]
    return Encoded(input_ids=ids, token_type_ids=None, labels=rng.integers(0, 3, n).astype(np.int64))


# --- determinism and resume: one finetune per subprocess ------------------------------------------------


def child(sz: dict, precision: str, state_dir: str, out_file: str) -> None:
    """One deterministic finetune (killed by WEIGHTSPACE_KILL_AFTER_STEP when set); its weights to out_file."""
    from safetensors.torch import save_file

    from weightspace.device import configure_torch
    from weightspace.finetune import FinetuneConfig, train

    configure_torch(min(8, os.cpu_count() or 1))
    model = build_model(sz, 0)
    data = token_data(sz["det_batch"] * 3, sz["det_seq"], sz["vocab"], 1, fixed_length=False)
    dev = token_data(sz["det_batch"], sz["det_seq"], sz["vocab"], 2, fixed_length=False)
    cfg = FinetuneConfig(
        lr=1e-4,
        batch_size=sz["det_batch"],
        epochs=100,
        max_steps=sz["det_steps"],
        max_length=sz["det_seq"],
        eval_every=3,
        patience=10,
        checkpoint_every=2,
        precision=precision,
        warmup_ratio=0.1,
    )
    state, device, amp = train(model, data, dev, cfg, 0, PAD, Path(state_dir), f"gpu_check {precision}", progress=False)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, out_file)
    print(json.dumps({"device": str(device), "autocast": str(amp), "attempts": state.attempts}), flush=True)


def precisions(cuda: bool) -> list[str]:
    # on CPU both autocast requests fall back to fp32: run it once
    return ["fp16", "bf16"] if cuda else ["fp32"]


def determinism(sz: dict, work: Path, tiny: bool, cuda: bool) -> dict:
    from safetensors.torch import load_file

    out = {}
    for precision in precisions(cuda):

        def run(name: str, kill: int | None = None) -> subprocess.CompletedProcess:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            env.pop("WEIGHTSPACE_KILL_AFTER_STEP", None)
            if kill is not None:
                env["WEIGHTSPACE_KILL_AFTER_STEP"] = str(kill)
            cmd = [sys.executable, __file__, "--child", precision, str(work / f"state-{precision}-{name}"), str(work / f"{precision}-{name}.safetensors")]
            return subprocess.run(cmd + (["--tiny"] if tiny else []), env=env, capture_output=True, text=True, timeout=300)

        t0 = time.perf_counter()
        a, b = run("a"), run("b")
        killed = run("resumed", kill=4)
        resumed = run("resumed")
        failed = [(n, p) for n, p in [("a", a), ("b", b), ("resumed", resumed)] if p.returncode != 0]
        if failed:
            out[precision] = {"error": {n: p.stderr[-1500:] for n, p in failed}}
            continue
        wa, wb, wr = (load_file(str(work / f"{precision}-{n}.safetensors")) for n in ["a", "b", "resumed"])
        out[precision] = {
            "same_seed_bitwise": all(torch.equal(wa[k], wb[k]) for k in wa),
            "killed_returncode": killed.returncode,
            "kill_resume_bitwise": all(torch.equal(wa[k], wr[k]) for k in wa),
            "max_abs_diff_resume": max(float((wa[k].double() - wr[k].double()).abs().max()) for k in wa),
            "run": json.loads(a.stdout.strip().splitlines()[-1]),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        log(f"determinism {precision}: {out[precision]}")
    return out


# --- throughput ---------------------------------------------------------------------------------------


def throughput(sz: dict, work: Path, cuda: bool) -> list[dict]:
    from weightspace.finetune import FinetuneConfig, bitfit_trainable, train

    rows = []
    dev = token_data(2, sz["seq"], sz["vocab"], 3, fixed_length=True)
    deterministic = True
    for precision in precisions(cuda)[::-1]:
        for batch in sz["batches"]:
            for mode in ["full", "bitfit"]:
                row = {"precision": precision, "batch": batch, "tokens": sz["seq"], "mode": mode, "deterministic": deterministic}
                model = None
                try:
                    model = build_model(sz, 0)
                    if mode == "bitfit":
                        row["trainable"] = bitfit_trainable(model)
                    data = token_data(batch * (sz["steps"] + 2), sz["seq"], sz["vocab"], 4, fixed_length=True)
                    cfg = dict(lr=5e-5, batch_size=batch, epochs=100, max_length=sz["seq"], eval_every=10**6, checkpoint_every=10**6, precision=precision)
                    train(model, data, dev, FinetuneConfig(**cfg, max_steps=2), 0, PAD, work / "tp-warm", "warm-up", progress=False)
                    if cuda:
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                    state, _, amp = train(model, data, dev, FinetuneConfig(**cfg, max_steps=sz["steps"]), 1, PAD, work / "tp", "throughput", progress=False)
                    if cuda:
                        torch.cuda.synchronize()
                    row.update(
                        autocast=str(amp),
                        examples_per_s=round(state.train_examples_seen / state.train_seconds, 1),
                        peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
                    )
                except Exception as err:  # noqa: BLE001 - recorded, the next configuration still runs
                    row["error"] = f"{type(err).__name__}: {str(err)[:400]}"
                    if "deterministic" in str(err) and deterministic:
                        # measure the rest anyway (the determinism section reports the cause)
                        deterministic = False
                        torch.use_deterministic_algorithms(True, warn_only=True)
                del model
                if cuda:
                    torch.cuda.empty_cache()
                log(f"throughput {row}")
                rows.append(row)
    return rows


# --- feature extraction and points ----------------------------------------------------------------------


def base_folder(sz: dict, folder: Path) -> Path:
    """A RoBERTa-shaped base model folder with a word-level tokenizer whose [PAD] is id 1."""
    from transformers import BertTokenizerFast, RobertaModel

    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]"] + [f"w{i}" for i in range(sz["vocab"] - 5)]
    BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]").save_pretrained(folder)
    torch.manual_seed(0)
    RobertaModel(model_config(sz), add_pooling_layer=False).save_pretrained(folder, safe_serialization=True)
    return folder


def texts(n: int, sz: dict, seed: int):
    import pandas as pd

    rng = np.random.default_rng(seed)
    words = [" ".join(f"w{j}" for j in rng.integers(0, sz["vocab"] - 5, rng.integers(sz["seq"] // 8, sz["seq"]))) for _ in range(n)]
    return pd.DataFrame({"text": words, "label": rng.integers(0, 3, n)})


def features_and_points(sz: dict, work: Path, cuda: bool) -> dict:
    from weightspace.loss import FeatureExtractor, score_points
    from weightspace.points import Point, accumulate
    from weightspace.weights import in_body

    out: dict = {}
    folder = base_folder(sz, work / "base")
    df = texts(sz["feat_n"], sz, 5)
    for batch in [32, 256]:
        ex = FeatureExtractor(str(folder), sz["seq"], batch_size=batch)
        ex.features(df.iloc[:batch])  # warm-up
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        ex.features(df)
        if cuda:
            torch.cuda.synchronize()
        out[f"features_per_s_batch{batch}"] = round(len(df) / (time.perf_counter() - t0), 1)
        log(f"features batch {batch}: {out[f'features_per_s_batch{batch}']}/s")

    pretrained = {n: p.detach().cpu().clone() for n, p in ex.model.named_parameters() if in_body(n)}
    out["body_parameters"] = sum(t.numel() for t in pretrained.values())
    g = torch.Generator().manual_seed(0)
    loaded = {f"m{i}": {n: t + 1e-3 * torch.randn(t.shape, generator=g) for n, t in pretrained.items()} for i in range(sz["acc_models"])}

    def points(n_points: int, n_models: int) -> list:
        rng = np.random.default_rng(0)
        return [Point.combination([f"m{i}" for i in range(n_models)], list(rng.dirichlet(np.ones(n_models)))) for _ in range(n_points)]

    def timed(pts, device) -> tuple[float, list]:
        buffers = [{n: torch.empty(t.shape, dtype=torch.float64, device=device) for n, t in pretrained.items()} for _ in pts]
        accumulate(pts[:1], pretrained, "", loaded, buffers)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = accumulate(pts, pretrained, "", loaded, buffers)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, res

    small = points(sz["cpu_points"], sz["cpu_models"])
    cpu_s, cpu_res = timed(small, torch.device("cpu"))
    cpu_terms = sz["cpu_points"] * sz["cpu_models"]
    out["accumulate_cpu_s_per_term"] = cpu_s / cpu_terms
    if cuda:
        gpu = torch.device("cuda")
        _, gpu_small = timed(small, gpu)
        out["accumulate_gpu_equals_cpu"] = all(torch.equal(a[n].cpu(), b[n]) for a, b in zip(gpu_small, cpu_res) for n in a)
        big = points(sz["acc_points"], sz["acc_models"])
        gpu_s, _ = timed(big, gpu)
        out["accumulate_gpu_s_per_term"] = gpu_s / (sz["acc_points"] * sz["acc_models"])
        out["accumulate_speedup"] = out["accumulate_cpu_s_per_term"] / out["accumulate_gpu_s_per_term"]
    log(f"accumulate: {out}")

    train_df, test_df = texts(min(1000, sz["feat_n"] // 2), sz, 6), texts(min(1000, sz["feat_n"] // 2), sz, 7)
    spec = {"choose": "per_target", "l2_grid": [1.0], "cv_folds": 3}
    ex = FeatureExtractor(str(folder), sz["seq"])
    pts = points(4, sz["acc_models"])
    t0 = time.perf_counter()
    scored = score_points(ex, pretrained, "", pts, {"toy": (train_df, test_df)}, spec, fixed={"toy": 1.0}, loaded=loaded, chunk=4, progress=False)
    out["loss_eval_s_per_point"] = (time.perf_counter() - t0) / len(pts)
    out["loss_eval_examples"] = [len(train_df), len(test_df)]
    out["loss_eval_rows"] = scored[["loss", "prior_loss", "accuracy"]].round(4).to_dict("records")
    log(f"loss evaluation: {out['loss_eval_s_per_point']:.2f} s/point")
    return out


def environment_section(cuda: bool) -> dict:
    import transformers

    from weightspace.device import native_bf16

    env = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": cuda,
        "cpu_threads": torch.get_num_threads(),
    }
    if cuda:
        props = torch.cuda.get_device_properties(0)
        env.update(
            device_name=props.name,
            memory_gib=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            native_bf16=native_bf16(),
            cudnn=torch.backends.cudnn.version(),
        )
    model = build_model(SIZES["tiny"], 0)
    env["attention"] = model.config._attn_implementation
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a 2-layer, 32-wide model: seconds, on CPU too")
    parser.add_argument("--out", type=Path, help="also write the JSON here, after every section")
    parser.add_argument("--child", nargs=3, metavar=("PRECISION", "STATE_DIR", "OUT_FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="*", default=["determinism", "throughput", "points"], help="sections to run")
    args = parser.parse_args()
    sz = SIZES["tiny" if args.tiny else "base"]
    import transformers

    transformers.logging.set_verbosity_error()
    if args.child:
        child(sz, *args.child)
        return
    from weightspace.device import configure_torch

    cuda = torch.cuda.is_available()
    result: dict = {"bench": "gpu_check", "size": "tiny" if args.tiny else "roberta-base", "ratio": None}
    started = time.perf_counter()

    def save():
        result["seconds"] = round(time.perf_counter() - started, 1)
        if args.out:
            args.out.write_text(json.dumps(result, indent=1, default=str))

    result["env"] = environment_section(cuda)
    log(f"env {result['env']}")
    save()
    configure_torch(min(8, os.cpu_count() or 1))  # deterministic kernels, as the workflow runs
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sections = {
            "determinism": lambda: determinism(sz, work, args.tiny, cuda),
            "throughput": lambda: throughput(sz, work, cuda),
            "points": lambda: features_and_points(sz, work, cuda),
        }
        for name in args.only:
            t0 = time.perf_counter()
            try:
                result[name] = sections[name]()
            except Exception:  # noqa: BLE001 - one section's failure must not hide the others' numbers
                result[name] = {"error": traceback.format_exc()[-2000:]}
            log(f"{name} done in {time.perf_counter() - t0:.1f} s")
            save()
    result["ratio"] = (result.get("points") or {}).get("accumulate_speedup")
    save()
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
