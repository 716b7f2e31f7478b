"""Region formation (issue 16) on the tiny workflow: snapshots along every finetune, the zoo's
geometry and the instrument at every snapshot step, the formation table, figures and summary."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from conftest import check_run, snakemake, write_config
from weightspace.geometry import read_matrix

STEPS = [3, 6, 12]


@pytest.fixture(scope="module")
def formation_run(tiny_assets, tmp_path_factory):
    """The tiny workflow with snapshots, geometry and calibration only (no paths, hull or
    centroid). One dev evaluation, at the last step: every final model is its step-12 weights."""
    config = copy.deepcopy(tiny_assets["config"])
    for key in ("size_experiment", "paths", "hull", "centroid"):
        config.pop(key)
    config["geometry"]["groupings"] = {g: config["geometry"]["groupings"][g] for g in ("dataset", "family")}
    config["finetune"].update(eval_every=12, snapshots=STEPS)
    work = tmp_path_factory.mktemp("formation")
    check_run(snakemake(work, write_config(work, config)), "formation workflow")
    return work


def test_the_last_snapshot_steps_gram_is_the_final_models_gram_exactly(formation_run):
    zoo = pd.read_parquet(formation_run / "results/zoo.parquet")
    assert (zoo["step"] == 12).all()  # every final model holds its step-12 weights
    ids, final = read_matrix(formation_run / "results/geometry/gram.parquet")
    last_ids, last = read_matrix(formation_run / "results/formation/gram/step12.parquet")
    assert last_ids == ids == zoo["model_id"].tolist()
    assert np.array_equal(last, final)  # bit for bit, not approximately
    _, early = read_matrix(formation_run / "results/formation/gram/step3.parquet")
    assert np.all(np.diag(early) < np.diag(last))  # the snapshots are really earlier: shorter task vectors


def test_snapshots_are_in_every_model_folder_and_flattened_with_their_step(formation_run):
    for model in sorted((formation_run / "results/models").glob("*/seed*")):
        metrics = json.loads((model / "metrics.json").read_text())
        assert [s["step"] for s in metrics["snapshots"]] == STEPS
        for step in STEPS:
            assert (model / "snapshots" / f"step{step}" / "model.safetensors").is_file()
            manifest = json.loads((formation_run / "results/formation/weights" / model.parent.name / model.name / f"step{step}" / "manifest.json").read_text())
            assert manifest["step"] == step and manifest["model_id"] == f"{model.parent.name}-s{model.name[4:]}"


def test_formation_tables_read_against_their_references(formation_run):
    geometry = pd.read_csv(formation_run / "results/tables/formation.csv")
    assert sorted(set(geometry["step"])) == STEPS and set(geometry["grouping"]) == {"dataset", "family"}
    assert geometry["chance_hungarian"].between(0.5, 1.0).all()  # two groups: chance is at least one half
    assert (geometry["cosine_within"] > -1).all() and "within_between_ratio" in geometry
    models = pd.read_csv(formation_run / "results/tables/formation_models.csv")
    assert len(models) == 4 * len(STEPS)
    last = models[models["step"] == 12]
    assert np.allclose(last["cosine_to_last"], 1.0)
    assert models["prior_loss"].notna().all() and models["majority_accuracy"].notna().all()
    assert (models.groupby("model_id")["norm"].apply(lambda n: n.is_monotonic_increasing)).all()
    # each snapshot's strength cross-validated on train: from the grid, its train-fold loss kept
    assert models["regularization"].isin([0.1, 1.0, 10.0, 100.0]).all() and models["train_cv_loss"].gt(0).all()
    first = pd.read_csv(formation_run / "results/tables/formation_first_step.csv")
    assert set(first["first_step_at_final"]) <= set(STEPS)


def test_formation_figures_and_summary_rows_exist_with_provenance(formation_run):
    for f in (
        "figures/formation.png",
        "figures/formation.svg",
        "figures/formation_settling.png",
        "figures/formation_settling.svg",
        "tables/formation.csv",
        "tables/formation.md",
        "tables/formation_models.csv",
        "tables/formation_first_step.csv",
    ):
        path = formation_run / "results" / f
        assert path.is_file(), f
        record = json.loads((path.parent / (path.name + ".provenance.json")).read_text())
        assert record["rule"] in ("formation_table", "plot_formation")
        upstream = "results/formation/gram/step12.parquet" if record["rule"] == "formation_table" else "results/tables/formation.csv"
        assert upstream in json.dumps(record["inputs"])
    summary = (formation_run / "results/summary.md").read_text()
    assert "region formation: first step at the final clustering accuracy, grouping family" in summary
    assert "the snapshot steps at which every model beats the prior predictor" in summary


# --- the analysis functions, on hand-made matrices ---------------------------------------------


def test_step_geometry_finds_planted_groups_and_reads_them_against_chance():
    from weightspace.formation import step_geometry

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 50))
    vectors = np.vstack([centres[i % 2] + 0.3 * rng.normal(size=50) for i in range(12)])
    norms = np.linalg.norm(vectors, axis=1)
    cos = vectors @ vectors.T / np.outer(norms, norms)
    labels = ["a" if i % 2 == 0 else "b" for i in range(12)]
    datasets = [f"{g}{i % 4 // 2}" for i, g in enumerate(labels)]  # two datasets per group
    row = step_geometry(cos, labels, datasets)
    assert row["accuracy_hungarian"] == 1.0 and row["chance_hungarian"] < 1.0 and row["clusters"]
    assert row["cosine_within"] > row["cosine_between"] and row["cosine_gap"] > 0
    noise = rng.normal(size=(12, 50))
    n = np.linalg.norm(noise, axis=1)
    row = step_geometry(noise @ noise.T / np.outer(n, n), labels, datasets)
    assert not row["clusters"]  # no planted structure: not above chance, or not closer within
    assert step_geometry(cos, labels[:11] + [None], datasets)["models"] == 11  # None: left out


def test_settling_and_the_first_step_at_the_final_accuracy():
    from weightspace.formation import first_step_at_final, settling

    steps = [1, 10, 100]
    v = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])  # the direction turns towards the last
    table = settling(v @ v.T, steps)
    assert table["cosine_to_last"].tolist() == pytest.approx([0.0, 2**-0.5, 1.0])
    assert table["norm"].tolist() == pytest.approx([1.0, 2**0.5, 2.0])
    geometry = pd.DataFrame(
        {
            "step": [1, 10, 100, 1, 10, 100],
            "grouping": ["dataset"] * 3 + ["family"] * 3,
            "accuracy_hungarian": [0.5, 1.0, 1.0, 0.6, 0.5, 0.6],
            "chance_hungarian": [0.7] * 6,
            "clusters": [False, True, True, False, False, False],
        }
    )
    first = first_step_at_final(geometry).set_index("grouping")
    assert first.loc["dataset", "first_step_at_final"] == 10 and first.loc["dataset", "clusters_from_step"] == 10
    assert first.loc["family", "first_step_at_final"] == 100  # 0.6 at step 1 does not count: it left it
    assert not first.loc["family", "ever_clusters"] and first.loc["family", "clusters_from_step"] is None
