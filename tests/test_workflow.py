"""The real Snakefile through Snakemake on the tiny config: zoo, round trips, determinism,
resume after a kill, bad configs, and the paper preset's offline plan."""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, snakemake, write_config
from conftest import check_run as _check
from weightspace.weights import FlatWeights

pytestmark = pytest.mark.slow

MODELS = [("alpha", 0), ("alpha", 1), ("beta", 0), ("beta", 1)]
SIZE_MODELS = [("alpha_n12", 0), ("alpha_n24", 0), ("beta_n12", 0), ("beta_n24", 0)]
ALL = MODELS + SIZE_MODELS


def test_zoo_has_one_row_per_model_with_metrics(full_run):
    zoo = pq.read_table(full_run / "results/zoo.parquet").to_pylist()
    assert [(r["dataset"], r["seed"]) for r in zoo] == ALL
    pretrained = json.loads((full_run / "results/pretrained/weights/manifest.json").read_text())
    for row in zoo:
        assert row["model_id"] == f"{row['dataset']}-s{row['seed']}"
        parent = row["size_of"] or row["dataset"]
        assert row["families"] == (["weather"] if parent == "alpha" else ["things", "weather"])
        if row["size_of"]:
            assert row["train_examples"] == row["train_size"] == int(row["dataset"].rsplit("_n", 1)[1])
        assert row["steps"] == 12
        assert 0.0 <= row["test_accuracy"] <= 1.0 and np.isfinite(row["test_loss"]) and np.isfinite(row["dev_loss"])
        assert row["examples_per_s"] > 0
        assert row["num_positions"] == pretrained["num_positions"]
        metrics = json.loads((full_run / row["checkpoint"] / "metrics.json").read_text())
        assert metrics["test_accuracy"] == row["test_accuracy"] and metrics["steps"] == 12
        assert len(metrics["history"]) == 3  # dev evaluations at steps 4, 8, 12


def test_data_splits_are_disjoint_and_labelled(full_run):
    info = json.loads((full_run / "results/data/beta/info.json").read_text())
    assert info["labels"] == ["animal", "vehicle", "fruit"] and info["pair"]
    texts = {}
    for split in ("train", "dev", "test"):
        t = pq.read_table(full_run / f"results/data/beta/{split}.parquet")
        assert set(t.column_names) == {"text", "text_pair", "label"}
        texts[split] = set(zip(t.column("text").to_pylist(), t.column("text_pair").to_pylist()))
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["dev"]


def test_parquet_weights_reconstruct_the_checkpoint_body_exactly(full_run):
    for dataset, seed in MODELS:
        state = load_file(str(full_run / f"results/models/{dataset}/seed{seed}/model.safetensors"))
        flat = FlatWeights(full_run / f"results/weights/{dataset}/seed{seed}")
        body = flat.body()
        # the body: everything below the head; BERT's pooler feeds only the classifier (head)
        assert set(body) == {k.removeprefix("bert.") for k in state if k.startswith("bert.") and not k.startswith("bert.pooler.")}
        assert not any(k.startswith("classifier") for k in body)  # the head is not part of the weight vector
        for name, tensor in body.items():
            assert torch.equal(tensor, state["bert." + name]), name
        # Plain pyarrow, no library code: the shards concatenate to the same vector.
        shards = sorted((full_run / f"results/weights/{dataset}/seed{seed}").glob("shard-*.parquet"))
        assert len(shards) > 1
        plain = np.concatenate([pq.read_table(s).column("weight").to_numpy() for s in shards])
        index = pq.read_table(full_run / f"results/weights/{dataset}/seed{seed}/index.parquet").to_pylist()
        for p in index:
            expected = state["bert." + p["name"]].reshape(-1).numpy()
            assert np.array_equal(plain[p["offset"] : p["offset"] + p["numel"]], expected)
        meta = json.loads(pq.read_schema(shards[0]).metadata[b"weightspace"])
        assert meta["dataset"] == dataset and meta["seed"] == seed and meta["model_id"] == f"{dataset}-s{seed}"


def test_checkpoints_load_with_from_pretrained(full_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = full_run / "results/models/beta/seed1"
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.id2label == {0: "animal", 1: "vehicle", 2: "fruit"}
    state = load_file(str(folder / "model.safetensors"))
    assert torch.equal(model.classifier.weight.detach(), state["classifier.weight"])
    assert tokenizer("cat dog")["input_ids"][0] == tokenizer.cls_token_id


def test_pretrained_reference_is_the_base_body(full_run, tiny_assets):
    base = load_file(str(tiny_assets["model"] / "model.safetensors"))
    flat = FlatWeights(full_run / "results/pretrained/weights").body()
    # the body: everything below the head; the pooler feeds only the classifier (head)
    assert set(flat) == {k for k in base if not k.startswith("pooler.")}
    assert all(torch.equal(flat[k], base[k]) for k in flat)


def test_finetune_log_shows_progress(full_run):
    log = (full_run / "results/logs/finetune/alpha/seed0.log").read_text()
    assert "finetune dataset 'alpha' seed 0" in log and "12/12" in log
    assert "dev loss" in log


def test_nothing_to_do_on_a_second_run(full_run):
    done = snakemake(full_run, full_run / "config.yaml", "-n")
    _check(done, "dry run")
    assert "Nothing to be done" in done.stdout + done.stderr


def test_same_seed_gives_bitwise_identical_weights(full_run, tiny_assets, tmp_path):
    config = write_config(tmp_path, tiny_assets["config"])
    _check(snakemake(tmp_path, config, "results/models/alpha/seed0", "results/models/beta/seed1"), "second run")
    for target in ("alpha/seed0", "beta/seed1"):
        a = load_file(str(full_run / f"results/models/{target}/model.safetensors"))
        b = load_file(str(tmp_path / f"results/models/{target}/model.safetensors"))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), target


def test_resume_after_kill_ends_with_the_uninterrupted_weights(full_run, tiny_assets, tmp_path):
    config = write_config(tmp_path, tiny_assets["config"])
    target = "results/models/alpha/seed0"
    killed = snakemake(tmp_path, config, target, env={"WEIGHTSPACE_KILL_AFTER_STEP": "8"})
    assert killed.returncode != 0
    assert not (tmp_path / target).exists()  # no half-written model looks complete
    state = json.loads((tmp_path / "results/resume/alpha/seed0/checkpoint/state.json").read_text())
    assert state["state"]["step"] == 8

    _check(snakemake(tmp_path, config, target), "rerun after kill")
    log = (tmp_path / "results/logs/finetune/alpha/seed0.log").read_text()
    assert "resumed dataset 'alpha' seed 0 from step 8 of 12" in log
    assert not (tmp_path / "results/resume/alpha/seed0").exists()
    a = load_file(str(full_run / target / "model.safetensors"))
    b = load_file(str(tmp_path / target / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


BAD_CONFIGS = [
    # (change, key named in the error)
    (lambda c: c["finetune"].update(lr="fast"), "finetune.lr"),
    (lambda c: c["finetune"].update(learning_rate=1e-4), "finetune.learning_rate"),
    (lambda c: c["zoo"].update(seeds=[0, 1.5]), "zoo.seeds.1"),
    (lambda c: c["zoo"].update(datasets=["alpha", "gamma"]), "zoo.datasets.1"),
    (lambda c: c["datasets"]["beta"]["source"].update(format="excel"), "datasets.beta.source.format"),
    (lambda c: c["data"].update(max_train=-3), "data.max_train"),
    (lambda c: c.update(base_model={"local": "/no/such/model"}), "base_model.local"),
    (lambda c: c["paths"]["same_family"].update(datasets=["alpha", "gamma"]), "paths.same_family.datasets.1"),
    (lambda c: c["hull"]["levels"]["dataset"].update(groups=["gamma"]), "hull.levels.dataset.groups.0"),
    (lambda c: c["datasets"]["beta"].update(families=["things"]), "paths.same_family.datasets"),  # alpha, beta share no family
    (lambda c: c["paths"].update(alphas=[]), "paths.alphas"),
    (lambda c: c["size_experiment"].update(sizes=[12, -24]), "size_experiment.sizes.1"),
    (lambda c: c["centroid"].update(region="nli"), "centroid.region"),
    (lambda c: c["hull"]["edges"].update(distances=[0, 1]), "hull.edges.distances.0"),
    (lambda c: c["hull"].update(max_points="all"), "hull.max_points"),
    (lambda c: c["hull"]["edges"].update(origin="north"), "hull.edges.origin"),
    (lambda c: c["loss"].update(l2=1.0), "loss.l2"),  # the fixed penalty became a cross-validated grid
    (lambda c: c["loss"].update(choose="per_model"), "loss.choose"),
    (lambda c: c["geometry"]["groupings"]["family"].update(groups=["weather", "sports"]), "geometry.groupings.family.groups"),
    (lambda c: c["finetune"].update(snapshots=[4, 40]), "finetune.snapshots"),  # past max_steps (12)
    (lambda c: c["finetune"].update(snapshots={"log_spaced": 1}), "finetune.snapshots"),
    (lambda c: c["datasets"]["alpha"].update(finetune={"snapshots": [2]}), "datasets.alpha.finetune.snapshots"),
]


@pytest.mark.parametrize("change,key", BAD_CONFIGS, ids=[k for _, k in BAD_CONFIGS])
def test_bad_config_stops_before_any_job_and_names_the_key(tiny_assets, tmp_path, change, key):
    config = copy.deepcopy(tiny_assets["config"])
    change(config)
    done = snakemake(tmp_path, write_config(tmp_path, config), "-n")
    assert done.returncode != 0
    assert f"config key '{key}'" in done.stderr + done.stdout
    assert not (tmp_path / "results").exists()


def test_a_hub_base_model_that_cannot_be_had_stops_before_any_job(tiny_assets, tmp_path):
    config = copy.deepcopy(tiny_assets["config"])
    config["base_model"] = {"hub": "no-such-org/no-such-model"}
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}  # an empty cache, no hub
    assert snakemake(tmp_path, write_config(tmp_path, config), "-n", env=env).returncode == 0  # planning stays offline
    done = snakemake(tmp_path, write_config(tmp_path, config), env=env)
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "config key 'base_model.hub'" in out and "huggingface-cli download no-such-org/no-such-model" in out
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def test_paper_preset_plans_offline_with_gpu_finetunes(tmp_path):
    # A dead proxy: any attempt to reach the network while planning would fail the dry run.
    dead = "http://127.0.0.1:9"
    env = {"HTTP_PROXY": dead, "HTTPS_PROXY": dead, "http_proxy": dead, "https_proxy": dead, "HF_HUB_OFFLINE": "0"}
    done = snakemake(tmp_path, REPO / "presets/paper.yaml", "-n", env=env)
    _check(done, "paper preset dry run")
    out = done.stdout
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M))
    assert int(counts["finetune"]) >= 180
    assert int(counts["flatten"]) == int(counts["finetune"])
    blocks = re.findall(r"^rule finetune:\n(.*?)(?=^\[|\Z)", out, flags=re.M | re.S)
    assert len(blocks) == int(counts["finetune"])
    assert all(re.search(r"resources: .*\bgpu=1\b", b) for b in blocks)
    # the hull stages stay small: one table per (level, group, set), its scoring in pieces of at
    # most hull.max_evaluations (20 pieces for the 15 sets); one per centroid, BitFit per run
    assert int(counts["hull_set_table"]) == 15 and int(counts["hull_set"]) == 20 and int(counts["edges"]) == 1
    assert int(counts["centroid"]) == 12 and int(counts["bitfit"]) == 12 * 2 * 2 * 5
    bitfit = re.findall(r"^rule bitfit:\n(.*?)(?=^\[|\Z)", out, flags=re.M | re.S)
    assert all(re.search(r"resources: .*\bgpu=1\b", b) for b in bitfit)


def _git_head() -> str:
    import subprocess

    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def test_every_table_and_figure_has_verifiable_provenance(full_run):
    from weightspace.provenance import verify

    outputs = ["results/zoo.parquet", "results/tables/finetune_summary.csv", "results/figures/finetune_accuracy.png", "results/summary.md"]
    for out in outputs:
        record = json.loads((full_run / f"{out}.provenance.json").read_text())
        assert record["output"] == out and record["git_commit"] == _git_head()
        assert isinstance(record["git_dirty"], bool)
        assert {"snakemake", "torch", "transformers", "pyarrow"} <= {k for k, v in record["versions"].items() if v}
        assert len(record["config_sha256"]) == 64 and len(record["full_config_sha256"]) == 64
        assert [m["model_id"] for m in record["zoo_models"]] == [f"{d}-s{s}" for d, s in ALL]
        assert all(m["finetune"]["lr"] == 1e-3 and len(m["checkpoint_sha256"]) == 64 for m in record["zoo_models"])
        # Checked independently of the recorded values: re-hash what the record names.
        import hashlib

        for rec in record["inputs"][:5]:
            assert hashlib.sha256((full_run / rec["path"]).read_bytes()).hexdigest() == rec["sha256"]
        import os

        cwd = os.getcwd()
        os.chdir(full_run)
        try:
            assert verify(record) == []
        finally:
            os.chdir(cwd)
    figure = json.loads((full_run / "results/figures/finetune_accuracy.png.provenance.json").read_text())
    assert figure["config"]["figures"]["dpi"] == 200
    assert "results/zoo.parquet" in [r["path"] for r in figure["inputs"]]


def test_every_figure_and_table_file_has_provenance(full_run):
    """PNG and SVG, CSV, Markdown and JSON: every file under results/figures and results/tables
    has its own record naming it, with its own sha256."""
    from weightspace.io import sha256_file

    files = [p for d in ("results/figures", "results/tables") for p in sorted((full_run / d).iterdir()) if not p.name.endswith(".provenance.json")]
    assert {p.suffix for p in files} == {".png", ".svg", ".csv", ".md", ".json"}
    for p in files:
        record = json.loads(Path(f"{p}.provenance.json").read_text())
        assert record["output"] == str(p.relative_to(full_run)) and record["output_sha256"] == sha256_file(p)


def test_lineage_command_prints_back_to_the_data_from_anywhere(full_run, tmp_path):
    """From outside the run (and the repository), a figure's SVG: its lineage reaches the
    finetunes, their data splits and the data's source archive; --verify re-hashes all of it
    and catches a changed split."""
    import subprocess
    import sys

    figure = full_run / "results/figures/finetune_accuracy.svg"
    cmd = [sys.executable, "-m", "weightspace.lineage", str(figure), "--verify"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "made by rule plot_finetune_accuracy" in out and "made by rule zoo" in out
    assert "alpha-s0: dataset alpha, seed 0" in out and "lr=0.001" in out
    assert "files match" in out
    assert re.search(r"alpha-s0: .*train results/data/alpha/train\.parquet sha256 \w+.*\(match\)", out), out[-2000:]
    assert re.search(r"alpha: local files .*\(match\)|alpha: package .*\(match\)", out), out[-2000:]
    # a depth of 0: the figure's own record only, the data still reached
    shallow = subprocess.run(cmd + ["--depth", "0"], cwd=tmp_path, capture_output=True, text=True)
    assert shallow.returncode == 0 and "made by rule zoo" not in shallow.stdout and "results/data/alpha/train.parquet" in shallow.stdout
    split = full_run / "results/data/alpha/train.parquet"
    original = split.read_bytes()
    try:
        split.write_bytes(original + b"\0")
        changed = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    finally:
        split.write_bytes(original)
    assert changed.returncode == 1
    assert "results/data/alpha/train.parquet: sha256 differs from the recorded one" in changed.stdout


def test_report_shows_the_git_commit(full_run, tmp_path):
    done = snakemake(full_run, full_run / "config.yaml", "--report", str(tmp_path / "report.html"))
    _check(done, "report")
    html = (tmp_path / "report.html").read_text()
    assert _git_head() in html
    assert "finetune_accuracy.png" in html and "finetune_summary.csv" in html


def test_gram_matrix_equals_an_independent_in_memory_computation(full_run):
    from weightspace.geometry import read_matrix

    ids, gram = read_matrix(full_run / "results/geometry/gram.parquet")
    assert ids == [f"{d}-s{s}" for d, s in ALL]

    def vector(folder: Path) -> np.ndarray:
        return np.concatenate([pq.read_table(s).column("weight").to_numpy() for s in sorted(folder.glob("shard-*.parquet"))]).astype(np.float64)

    pre = vector(full_run / "results/pretrained/weights")
    tau = np.stack([vector(full_run / f"results/weights/{d}/seed{s}") - pre for d, s in ALL])
    np.testing.assert_allclose(gram, tau @ tau.T, rtol=1e-6)
    _, cos = read_matrix(full_run / "results/geometry/cosine.parquet")
    n = np.linalg.norm(tau, axis=1)
    np.testing.assert_allclose(cos, (tau @ tau.T) / np.outer(n, n), rtol=1e-6, atol=1e-12)
    norms = pq.read_table(full_run / "results/geometry/norms.parquet").column("norm").to_numpy()
    np.testing.assert_allclose(norms, n, rtol=1e-6)


def test_clustering_figures_and_summary(full_run):
    for grouping, models in (("dataset", MODELS), ("family", MODELS), ("size_dataset", SIZE_MODELS), ("size", SIZE_MODELS)):
        metrics = json.loads((full_run / f"results/geometry/clusters/{grouping}/metrics.json").read_text())
        assert metrics["models"] == 4 and metrics["groups"] == 2
        assert 0.5 <= metrics["accuracy_majority"] <= 1.0 and 0.5 <= metrics["accuracy_hungarian"] <= 1.0
        assignments = pq.read_table(full_run / f"results/geometry/clusters/{grouping}/assignments.parquet").to_pandas()
        assert sorted(assignments["model_id"]) == sorted(f"{d}-s{s}" for d, s in models)
        expected = {"size": ["12", "24"], "size_dataset": ["alpha", "beta"], "dataset": ["alpha", "beta"], "family": ["things", "weather"]}
        assert sorted(assignments["group"].unique()) == expected[grouping]
        assert (full_run / f"results/figures/tsne_{grouping}.png").stat().st_size > 10_000
        assert (full_run / f"results/figures/tsne_{grouping}.svg").is_file()
        assert json.loads((full_run / f"results/figures/tsne_{grouping}.png.provenance.json").read_text())["rule"] == "plot_tsne"
    summary = (full_run / "results/summary.md").read_text()
    dataset = json.loads((full_run / "results/geometry/clusters/dataset/metrics.json").read_text())
    assert f"| clustering accuracy, by dataset | 98% | {100 * dataset['accuracy_majority']:.0f}% majority rule" in summary
    rows = json.loads((full_run / "results/summary.json").read_text())["rows"]
    assert {r["claim"] for r in rows} >= {
        "clustering accuracy, by dataset",
        "clustering accuracy, by family (things, weather)",
        "clustering accuracy, by training-set size",
    }


def test_paths_tables_figures_and_an_independently_rescored_point(full_run, tiny_assets):
    import math

    import pandas as pd

    from weightspace.loss import generalized_loss, subsample
    from weightspace.weights import pretrained_body

    same = pd.read_parquet(full_run / "results/paths/same_dataset/pair0.parquet")
    alphas = [-3.0, -1.0, 0.0, 0.5, 1.0, 2.0, 4.0]
    assert sorted(same["alpha"].unique()) == pytest.approx(alphas)
    assert set(same["target"]) == {"alpha"} and set(same["model_a"]) == {"alpha-s0"} and set(same["model_b"]) == {"alpha-s1"}
    family = pd.read_parquet(full_run / "results/paths/same_family/pair0.parquet")
    assert len(family) == len(alphas) * 2 and set(family["target"]) == {"alpha", "beta"}
    assert (family["loss"] > 0).all() and family["loss"].map(math.isfinite).all()
    for name in ("fig3_interpolation", "fig5_extrapolation", "paths_per_dataset"):
        assert (full_run / f"results/figures/{name}.png").stat().st_size > 10_000
        assert (full_run / f"results/figures/{name}.png.provenance.json").is_file()
    stats = json.loads((full_run / "results/paths/path_stats.json").read_text())
    assert stats["same_dataset"]["pairs"] == 1 and stats["same_family"]["pairs"] == 1
    assert "lowest loss strictly inside (0, 1)" in (full_run / "results/summary.md").read_text()

    # Re-score alpha = 0.5 by hand from the two checkpoints, without the Point machinery.
    a = load_file(str(full_run / "results/models/alpha/seed0/model.safetensors"))
    b = load_file(str(full_run / "results/models/alpha/seed1/model.safetensors"))
    names = pretrained_body(tiny_assets["model"]).keys()
    body = {n: (0.5 * a["bert." + n].double() + 0.5 * b["bert." + n].double()).float() for n in names}
    train = subsample(pd.read_parquet(full_run / "results/data/alpha/probe.parquet"), 24, "alpha/probe")  # loss.probe_on: probe
    test = subsample(pd.read_parquet(full_run / "results/data/alpha/test.parquet"), 12, "alpha/test")
    spec = tiny_assets["config"]["loss"]
    # loss.choose is per_target: the strength calibrate chose on alpha's probe split, for every alpha
    chosen = json.loads((full_run / "results/loss/calibration/alpha.json").read_text())["regularization"]
    out = generalized_loss(body, str(full_run / "resources/base_model"), train, test, max_length=16, grid=[chosen])
    row = same[same["alpha"] == 0.5].iloc[0]
    assert out["loss"] == pytest.approx(row["loss"], rel=1e-6) and out["accuracy"] == row["accuracy"]
    assert (same["regularization"] == chosen).all() and out["prior_loss"] == row["prior_loss"]
    # every loss row stands beside its reference, the same for every alpha of a target
    assert {"prior_loss", "majority_accuracy", "regularization"} <= set(same.columns)
    assert same.groupby("target")["prior_loss"].nunique().eq(1).all() and same["regularization"].isin(spec["l2_grid"]).all()
    assert stats["same_dataset"]["prior_loss"] == pytest.approx(float(same["prior_loss"].iloc[0]))


def test_calibration_table_scores_every_zoo_model_on_its_own_dataset(full_run, tiny_assets):
    import pandas as pd

    from weightspace.loss import prior_loss, subsample

    table = pd.read_csv(full_run / "results/loss/calibration.csv")
    assert list(table.columns[:7]) == ["model_id", "dataset", "loss", "prior_loss", "accuracy", "majority_accuracy", "regularization"]
    assert sorted(table["model_id"]) == ["alpha-s0", "alpha-s1", "beta-s0", "beta-s1"]
    assert (table["beats_prior"] == (table["loss"] < table["prior_loss"])).all()
    # the head and its reference (the prior) come from the probe split; the train-split reading beside it has its own
    assert (table["probe_on"] == "probe").all() and {"fit_fold_loss", "train_fold_loss", "train_reading_loss", "train_reading_prior_loss"} <= set(table.columns)
    for dataset, rows in table.groupby("dataset"):
        fit = subsample(pd.read_parquet(full_run / f"results/data/{dataset}/probe.parquet"), 24, f"{dataset}/probe")
        train = subsample(pd.read_parquet(full_run / f"results/data/{dataset}/train.parquet"), 24, f"{dataset}/train")
        test = subsample(pd.read_parquet(full_run / f"results/data/{dataset}/test.parquet"), 12, f"{dataset}/test")
        ref = prior_loss(fit["label"].to_numpy(), test["label"].to_numpy())
        assert rows["prior_loss"].to_numpy() == pytest.approx(ref["prior_loss"]) and rows["majority_accuracy"].to_numpy() == pytest.approx(
            ref["majority_accuracy"]
        )
        assert rows["train_reading_prior_loss"].to_numpy() == pytest.approx(prior_loss(train["label"].to_numpy(), test["label"].to_numpy())["prior_loss"])
    assert (full_run / "results/loss/calibration.csv.provenance.json").is_file()
    summary = (full_run / "results/summary.md").read_text()
    assert (
        "| instrument: zoo models whose generalized loss beats the prior predictor on their own dataset (head fitted on the probe split) "
        f"| every model (a finetuned model is its own dataset's reference) | {int(table['beats_prior'].sum())} of 4 |" in summary
    )
    # loss rows scored on a dataset where the instrument fails its reference say so
    failing = set(table.loc[~table["beats_prior"], "dataset"])
    rows = json.loads((full_run / "results/summary.json").read_text())["rows"]
    loss_rows = [r for r in rows if "pairs:" in r["claim"] or r["claim"].startswith(("PB(", "edges"))]
    assert len(loss_rows) >= 6
    pb = pd.read_csv(full_run / "results/tables/probability_of_better.csv")
    level_targets = {lv: set(" ".join(pb[pb["level"] == lv]["targets"]).split()) for lv in set(pb["level"])}
    edges_targets = set(pd.read_parquet(full_run / "results/hull/edges.parquet")["target"])
    for r in loss_rows:
        if "pairs:" in r["claim"]:
            targets = set(r["note"].split("targets ", 1)[1].split(";")[0].split(", "))
        elif r["claim"].startswith("PB("):
            targets = level_targets[r["claim"].rsplit(", ", 1)[1].split(" ")[0]]
        else:
            targets = edges_targets
        assert r["note"].startswith("UNCALIBRATED instrument on") == bool(failing & targets), (r, failing)


def test_no_finetune_bitfit_or_centroid_input_reads_a_probe_split_row(full_run):
    """The probe split is the generalized loss's alone: every finetuned and BitFit model lists
    the content hashes of the rows it read (metrics.json rows_read), and none is a probe row;
    the centroids average zoo models only, each of them checked here."""
    import pandas as pd

    from weightspace.data import row_hashes
    from weightspace.io import sha256_file

    data = full_run / "results/data"
    probe, train = {}, {}
    for info_path in sorted(data.glob("*/info.json")):
        info = json.loads(info_path.read_text())
        rows = row_hashes(pd.read_parquet(info_path.parent / "probe.parquet"))
        assert info["probe_row_hashes"] == rows and len(rows) >= 8
        assert info["splits_sha256"]["probe"] == sha256_file(info_path.parent / "probe.parquet")
        probe[info["dataset"]] = set(rows)
        train[info["dataset"]] = row_hashes(pd.read_parquet(info_path.parent / "train.parquet"))
    models = sorted((full_run / "results/models").glob("*/seed*")) + sorted((full_run / "results/bitfit").glob("*/*/*/seed*"))
    assert len(models) >= 4 + 2 + 8  # zoo, size variants, BitFit (2 regimes x 2 starts x 2 datasets)
    checked = set()
    for folder in models:
        metrics = json.loads((folder / "metrics.json").read_text())
        read = metrics["rows_read"]
        assert set(read) == {"train", "dev", "test"}
        assert not probe[metrics["dataset"]] & set().union(*map(set, read.values())), folder
        # the hashes are those of the rows really read: the train split's file (a subsample of it for few-shot BitFit)
        assert len(read["train"]) == metrics["train_examples"] and set(read["train"]) <= set(train[metrics["dataset"]])
        if "bitfit" not in folder.parts and metrics["dataset"] in train:
            assert read["train"] == train[metrics["dataset"]]
        checked.add(f"{metrics['dataset']}-s{metrics['seed']}")
    for centroid in (full_run / "results/centroids").glob("*/centroid.json"):
        assert set(json.loads(centroid.read_text())["models"]) <= checked
    # the lineage names each dataset's probe split beside its source, and --verify re-hashes it
    from weightspace.lineage import print_lineage

    out = io.StringIO()
    assert print_lineage(full_run / "results/loss/calibration.csv", out=out, check=True) == 0
    assert "probe split results/data/alpha/probe.parquet" in out.getvalue()
