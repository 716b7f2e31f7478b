"""In / In' / Ex, probability of better and the region's edges (methods.md §6-7)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from weightspace.hull import (
    bootstrap_interval,
    dirichlet_weights,
    edge_points,
    pooled_probability_of_better,
    probability_of_better,
    region_radius,
    set_points,
)
from weightspace.plan import hull_groups, hull_set
from weightspace.points import Point, materialize


def folder_of(member):
    d, s = member
    return f"results/models/{d}/seed{s}"


def points_of(group, which, key, seed, cap, in_norms=None):
    """A hull_set job's points, as the workflow makes them: plan.hull_set chooses, the job builds."""
    job = hull_set(group, which, key, seed, cap)
    return set_points(which, job["members"], [folder_of(m) for m in job["members"]], key, seed, job["count"], in_norms if job["random"] else None)


def test_probability_of_better_on_hand_made_sets_with_ties():
    # pairs (a < b): 1<2, 1<3, 2<3 (2 vs 2 is a tie: against A), 3 vs 2, 3 vs 3 lose
    assert probability_of_better([1, 2, 3], [2, 3]) == pytest.approx(3 / 6)
    assert probability_of_better([1, 1], [1, 1]) == 0.0  # all ties count against A
    assert probability_of_better([0.1], [0.2, 0.3]) == 1.0
    assert probability_of_better([5.0], [0.2, 0.3]) == 0.0
    # pooled over two groups: 3 wins of 6 and 2 wins of 2 -> 5 of 8
    assert pooled_probability_of_better([([1, 2, 3], [2, 3]), ([0.0], [1.0, 2.0])]) == pytest.approx(5 / 8)
    with pytest.raises(ValueError):
        probability_of_better([], [1.0])


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 20), rng.normal(0.5, 1, 20)
    pb = probability_of_better(a, b)
    lo, hi = bootstrap_interval([(a, b)], 500, seed=3)
    assert (lo, hi) == bootstrap_interval([(a, b)], 500, seed=3)
    assert lo < pb < hi and 0 <= lo and hi <= 1
    # a sure thing has a degenerate interval
    assert bootstrap_interval([([0.0, 0.1], [1.0, 2.0])], 200, seed=0) == (1.0, 1.0)


def test_dirichlet_weights_are_seeded_positive_and_sum_to_one():
    w = dirichlet_weights(5, 7, seed=11)
    assert w.shape == (7, 5)
    assert (w > 0).all()
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert np.array_equal(w, dirichlet_weights(5, 7, seed=11))
    assert not np.array_equal(w, dirichlet_weights(5, 7, seed=12))
    # uniform on the simplex: every coordinate has mean 1/n
    assert np.allclose(dirichlet_weights(4, 20000, seed=0).mean(axis=0), 0.25, atol=0.01)


def _config():
    datasets = {
        "a": {"families": ["f"]},
        "b": {"families": ["f", "g"]},
        "c": {"families": ["h"]},
        "d": {"families": ["h"]},
    }
    return {
        "datasets": datasets,
        "zoo": {"datasets": ["a", "b", "c", "d"], "seeds": [0, 1, 2]},
        "hull": {"general": None, "levels": {"dataset": {"groups": ["a"]}, "family": {"groups": ["f"], "exclude": ["b"]}, "general": {}}},
    }


def test_groups_ex_never_holds_the_traits_own_models():
    groups = hull_groups(_config())
    ds = groups[("dataset", "a")]
    assert ds["in"] == [("a", 0), ("a", 1), ("a", 2)] and ds["targets"] == ["a"]
    assert ds["ex"] and not [m for m in ds["ex"] if m[0] == "a"]
    assert {m[0] for m in ds["ex"]} == {"b", "c", "d"}
    fam = groups[("family", "f")]
    assert {m[0] for m in fam["in"]} == {"a", "b"} and {m[0] for m in fam["ex"]} == {"c", "d"}
    assert fam["targets"] == ["a"]  # b is In but excluded from scoring
    gen = groups[("general", "general")]
    assert len(gen["in"]) == 12 and gen["ex"] is None
    for key, group in groups.items():
        if group["ex"] is not None:
            for cap in (None, 2):
                pts = points_of(group, "ex", "/".join(key), 0, cap)
                folders = {f for p in pts for f, _ in p.coefficients}
                assert not folders & {f"results/models/{d}/seed{s}" for d, s in group["in"]}


def test_in_prime_combines_every_in_model_and_is_capped_in_count():
    group = hull_groups(_config())[("general", "general")]
    pts = points_of(group, "in_prime", "general/general", 0, 5)
    assert len(pts) == 5
    for p in pts:
        w = np.array([c for _, c in p.coefficients])
        assert len(w) == 12 and (w > 0).all() and math.isclose(w.sum(), 1.0)
    assert [str(p) for p in pts] == [str(p) for p in points_of(group, "in_prime", "general/general", 0, 5)]


def test_general_ex_direction_has_exactly_the_mean_in_norm():
    group = hull_groups(_config())[("general", "general")]
    norms = list(np.linspace(1.0, 3.0, 12))
    pts = points_of(group, "ex", "general/general", 0, 3, in_norms=norms)
    assert len(pts) == 3 and all(p.pretrained == 1.0 and not p.coefficients for p in pts)
    pretrained = {"w": torch.randn(6, 4), "b": torch.randn(6)}
    for p in pts:
        body = materialize(p, pretrained, "x.")
        moved = math.sqrt(sum(float(((body[k].double() - pretrained[k].double()) ** 2).sum()) for k in body))
        assert moved == pytest.approx(np.mean(norms), rel=1e-6)
    assert len({str(p) for p in pts}) == 3  # distinct directions


def test_region_radius_matches_a_direct_computation():
    rng = np.random.default_rng(1)
    tau = rng.normal(size=(5, 40))
    radius, centre = region_radius(tau @ tau.T)
    c = tau.mean(axis=0)
    assert radius == pytest.approx(np.mean(np.linalg.norm(tau - c, axis=1)))
    assert centre == pytest.approx(np.linalg.norm(c))


def test_edge_points_lie_at_the_requested_distances(tmp_path):
    from safetensors.torch import save_file

    from weightspace.io import sha256_file, write_json

    rng = torch.Generator().manual_seed(0)
    pretrained = {"w": torch.randn(8, 6, generator=rng), "b": torch.randn(8, generator=rng)}
    members = [("m", s) for s in range(3)]
    bodies = []
    for d, s in members:
        folder = tmp_path / "results/models" / d / f"seed{s}"
        folder.mkdir(parents=True)
        body = {k: v + 0.3 * torch.randn(v.shape, generator=rng) for k, v in pretrained.items()}
        bodies.append(body)
        save_file({f"x.{k}": v for k, v in body.items()}, str(folder / "model.safetensors"))
        write_json(folder / "checksums.json", {"model.safetensors": sha256_file(folder / "model.safetensors")})
    flat = lambda b: torch.cat([b[k].double().flatten() for k in ("w", "b")])  # noqa: E731
    tau = torch.stack([flat(b) - flat(pretrained) for b in bodies]).numpy()
    radius, centre_norm = region_radius(tau @ tau.T)
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        centre = flat(materialize(Point.combination([f"results/models/m/seed{s}" for _, s in members], [1 / 3] * 3), pretrained, "x."))
        weight_norm = float(centre.norm())
        # distances in radii: 0.5 and 2 lie short of the pretrained model only if it is far enough
        end = centre_norm / radius
        distances = [end / 4, end / 2, 2 * end]
        placed = edge_points([folder_of(m) for m in members], radius, centre_norm, weight_norm, distances, 2, seed=0, origins=("zero", "pretrained"))
        assert placed[0][:2] == ("centroid", 0.0)
        assert torch.equal(flat(materialize(placed[0][2], pretrained, "x.")), centre)
        for kind, dist, point in placed[1:]:
            x = flat(materialize(point, pretrained, "x."))
            assert float((x - centre).norm()) == pytest.approx(dist * radius, rel=1e-5)
            if kind == "toward zero":  # the centroid scaled down: (1 - s) * centroid
                s = dist * radius / weight_norm
                assert torch.allclose(x, (1 - s) * centre, rtol=0, atol=1e-5)
            if kind == "toward pretrained":  # on the segment toward the pretrained model, never past it
                to_origin = flat(pretrained) - centre
                cos = float((x - centre) @ to_origin / ((x - centre).norm() * to_origin.norm()))
                assert cos == pytest.approx(1.0, abs=1e-6)
                assert float((x - centre).norm()) <= float(to_origin.norm()) * (1 + 1e-9)
    finally:
        os.chdir(cwd)
    kinds = [k for k, _, _ in placed]
    assert kinds.count("random 0") == 3 and kinds.count("random 1") == 3
    # toward zero: the zero vector is far (||centroid|| >> 2 end), so all three distances
    assert kinds.count("toward zero") == 3
    # toward the pretrained model: end / 4, end / 2, then the pretrained model itself (2 end left out)
    toward = [(d, p) for k, d, p in placed if k == "toward pretrained"]
    assert [d for d, _ in toward] == pytest.approx([end / 4, end / 2, end])
    reached = toward[-1][1]
    assert reached.pretrained == 1.0 and all(c == 0.0 for _, c in reached.coefficients)
    with pytest.raises(ValueError, match="origin"):
        edge_points([folder_of(m) for m in members], radius, centre_norm, weight_norm, [1.0], 1, seed=0, origins=("north",))


def test_capped_sets_are_stratified_by_dataset():
    from weightspace.plan import _capped

    members = [(d, s) for d in ("a", "b", "c") for s in range(5)] + [("d", 0)]
    for seed in range(20):
        picked = _capped(members, 4, "general/general/in", seed)
        assert len(picked) == 4 and {d for d, _ in picked} == {"a", "b", "c", "d"}
        assert picked == sorted(picked, key=members.index)  # original order
        six = _capped(members, 6, "general/general/in", seed)
        counts = pd.Series([d for d, _ in six]).value_counts()
        assert counts.max() - counts[counts.index != "d"].min() <= 1 and counts["d"] == 1
    assert _capped(members, 5, "k", 0) == _capped(members, 5, "k", 0)
    assert _capped(members, 5, "k", 0) != _capped(members, 5, "k", 1) or _capped(members, 5, "k", 2) != _capped(members, 5, "k", 0)


@pytest.mark.slow
def test_hull_tables_figures_and_an_independently_rescored_in_prime_point(full_run, tiny_assets, monkeypatch):
    from safetensors.torch import load_file

    from weightspace.loss import generalized_loss, subsample
    from weightspace.weights import pretrained_body

    tables = {}
    for level, group in (("dataset", "alpha"), ("family", "things"), ("general", "general")):
        for s in ("in", "in_prime", "ex"):
            tables[(level, group, s)] = pd.read_parquet(full_run / f"results/hull/{level}/{group}/{s}.parquet")
    # dataset level: In = alpha's two seeds, Ex = beta's models only
    assert set(tables[("dataset", "alpha", "in")]["label"]) == {"alpha-s0", "alpha-s1"}
    assert set(tables[("dataset", "alpha", "ex")]["label"]) == {"beta-s0", "beta-s1"}
    assert set(tables[("general", "general", "ex")]["label"]) == {"random 0", "random 1", "random 2", "random 3"}
    assert set(tables[("family", "things", "in")]["target"]) == {"beta"}
    pb = pd.read_csv(full_run / "results/tables/probability_of_better.csv")
    assert set(pb["level"]) == {"dataset", "family", "general"}
    assert ((pb["ci_low"] <= pb["pb"]) & (pb["pb"] <= pb["ci_high"])).all()
    summary = (full_run / "results/summary.md").read_text()
    assert "PB(In' > Ex), general level | 100% |" in summary and "edges: loss from the centroid" in summary
    for name in ("fig4_hull", "fig11_edges"):
        assert (full_run / f"results/figures/{name}.png").stat().st_size > 10_000
        assert (full_run / f"results/figures/{name}.png.provenance.json").is_file()
    edges = pd.read_parquet(full_run / "results/hull/edges.parquet")
    assert set(edges["kind"]) == {"centroid", "toward zero", "toward pretrained", "random 0", "random 1"} and (edges["radius"] > 0).all()
    for table in [*tables.values(), edges]:
        assert {"loss", "prior_loss", "accuracy", "majority_accuracy", "regularization"} <= set(table.columns)
        assert table["regularization"].isin(tiny_assets["config"]["loss"]["l2_grid"]).all()
    assert np.allclose(edges["distance_fraction_of_centroid_norm"], edges["distance"] * edges["radius"] / edges["centroid_norm"])

    # Re-score the first In' point by hand: its recorded weights, the checkpoints, the probe.
    row = tables[("general", "general", "in_prime")].iloc[0]
    recorded = json.loads(row["weights"])
    monkeypatch.chdir(full_run)
    body = None
    for folder, coef in recorded["coefficients"]:
        ckpt = {k[len("bert.") :]: v.double() for k, v in load_file(f"{folder}/model.safetensors").items() if k.startswith("bert.")}
        body = {k: coef * v for k, v in ckpt.items()} if body is None else {k: body[k] + coef * ckpt[k] for k in body}
    body = {k: body[k].float() for k in pretrained_body("resources/base_model")}
    # the head is fitted on the probe split (loss.probe_on: probe)
    train = subsample(pd.read_parquet(f"results/data/{row['target']}/probe.parquet"), 24, f"{row['target']}/probe")
    test = subsample(pd.read_parquet(f"results/data/{row['target']}/test.parquet"), 12, f"{row['target']}/test")
    # loss.choose is per_target: the strength is the one calibrate chose for the target on its probe split
    chosen = json.loads((full_run / f"results/loss/calibration/{row['target']}.json").read_text())["regularization"]
    assert row["regularization"] == chosen
    out = generalized_loss(body, "resources/base_model", train, test, max_length=16, grid=[chosen])
    assert out["loss"] == pytest.approx(row["loss"], rel=1e-5)
    assert out["prior_loss"] == pytest.approx(row["prior_loss"], rel=1e-12)
