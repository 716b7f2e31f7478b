"""results/summary.md (and summary.json): our numbers beside the paper's (methods.md §9)."""

from pathlib import Path

import pandas as pd

from weightspace.comparison import PAPER_BITFIT, PAPER_CLUSTERING, PAPER_EDGES, PAPER_PATHS, PAPER_PB, markdown, pct, row
from weightspace.io import read_json, write_json
from weightspace.logs import to_log_file
from weightspace.provenance import write_job_provenance
from weightspace.zoo import read_zoo

to_log_file(snakemake.log[0])
zoo = read_zoo(snakemake.input.zoo).to_pandas()
rows = []
for path, scores_path in zip(snakemake.input.metrics, snakemake.input.scores):
    m = read_json(path)
    spec = snakemake.params.groupings[m["grouping"]]
    if spec["by"] == "dataset":
        claim = "clustering accuracy, by dataset"
    elif spec["by"] == "family":
        claim = f"clustering accuracy, by family ({', '.join(spec['groups'])})"
    else:
        claim = "clustering accuracy, by training-set size"
    paper = PAPER_CLUSTERING[spec["by"]]
    ours = f"{pct(m['accuracy_majority'])} majority rule, {pct(m['accuracy_hungarian'])} one-to-one"
    note = f"{m['models']} models, {m['groups']} groups; mean cosine within groups {m['cosine_within']:.3f}, between {m['cosine_between']:.3f}"
    if spec["by"] != "dataset" and m.get("cosine_within_other_dataset") is not None:
        note += f"; same group, other dataset {m['cosine_within_other_dataset']:.3f}"
    rows.append(row(claim, ours, note, paper))
    f1 = pd.read_csv(scores_path)
    rows.append(
        row(
            f"per-group F1, grouping {m['grouping']}",
            ", ".join(f"{g} {100 * v:.0f}" for g, v in zip(f1["group"], f1["f1"])),
            "majority-rule labels",
            "Table 1 (see below)",
        )
    )
calibration = pd.read_csv(snakemake.input.calibration)
per_dataset = calibration.groupby("dataset", sort=False).agg(
    beat=("beats_prior", "sum"),
    models=("beats_prior", "size"),
    loss=("loss", "mean"),
    prior=("prior_loss", "first"),
    accuracy=("accuracy", "mean"),
    majority=("majority_accuracy", "first"),
)
uncalibrated = sorted(per_dataset.index[per_dataset["beat"] < per_dataset["models"]])
probe_on = str(calibration["probe_on"].iloc[0])
train_reading_beats = int((calibration["train_reading_loss"] < calibration["train_reading_prior_loss"]).sum())
rows.append(
    row(
        f"instrument: zoo models whose generalized loss beats the prior predictor on their own dataset (head fitted on the {probe_on} split)",
        f"{int(calibration['beats_prior'].sum())} of {len(calibration)}",
        "; ".join(
            f"{d} {int(r.beat)}/{int(r.models)} (loss {r.loss:.3f} vs prior {r.prior:.3f}; accuracy {r.accuracy:.3f} vs majority {r.majority:.3f})"
            for d, r in per_dataset.iterrows()
        )
        + (f". UNCALIBRATED on {', '.join(uncalibrated)}: loss rows scored there measure the probe" if uncalibrated else "")
        + f". The paper's literal reading (head fitted on the train split): {train_reading_beats} of {len(calibration)} beat that split's prior "
        f"(mean train-fold loss {calibration['train_fold_loss'].mean():.3f} vs {calibration['fit_fold_loss'].mean():.3f} on the {probe_on} split's folds). "
        f"Every loss row below: head fitted on the {probe_on} split",
        "every model (a finetuned model is its own dataset's reference)",
    )
)


def instrument(targets) -> str:
    """The note's prefix for a loss row: which of its targets the instrument fails on."""
    bad = sorted(set(targets) & set(uncalibrated))
    return f"UNCALIBRATED instrument on {', '.join(bad)}; " if bad else ""


if "paths" in snakemake.input.keys():
    for name, st in read_json(snakemake.input.paths).items():
        ref = f"prior loss {st['prior_loss']:.3f}"
        pre = instrument(st["targets"]) + f"targets {', '.join(st['targets'])}; "
        rows.append(
            row(
                f"{name.replace('_', ' ')} pairs: lowest loss strictly inside (0, 1)",
                f"{pct(st['share_min_inside'])} of {st['pairs']} pairs",
                pre + "loss averaged over the pair set's targets",
                PAPER_PATHS["min_inside"],
            )
        )
        rows.append(
            row(
                f"{name.replace('_', ' ')} pairs: loss at alpha 0.5 vs mean of endpoints",
                f"{st['loss_mid']:.3f} vs {st['loss_endpoints']:.3f} ({ref})",
                pre + f"accuracy {st['accuracy_mid']:.3f} vs {st['accuracy_endpoints']:.3f} (majority {st['majority_accuracy']:.3f})",
                PAPER_PATHS["mid"],
            )
        )
        if st["loss_alpha_max"] is not None:
            rows.append(
                row(
                    f"{name.replace('_', ' ')} pairs: loss at alpha {st['alpha_max']:g} and {st['alpha_min']:g} vs endpoints",
                    f"{st['loss_alpha_max']:.3f} and {st['loss_alpha_min']:.3f} vs {st['loss_endpoints']:.3f} ({ref})",
                    pre + f"accuracy {st['accuracy_alpha_max']:.3f} and {st['accuracy_alpha_min']:.3f} vs {st['accuracy_endpoints']:.3f} "
                    f"(majority {st['majority_accuracy']:.3f})",
                    PAPER_PATHS["extrapolation"],
                )
            )
for claim in ("Table 1 F1 with the Twitter domain group", "Table 1 F1 without it"):
    rows.append(row(claim, "see per-group F1 rows", "our families differ from the paper's"))
if "hull" in snakemake.input.keys():
    pb = pd.read_csv(snakemake.input.hull)
    names = {"in_prime": "In'", "in": "In", "ex": "Ex"}
    for r in pb[pb["group"] == "all"].itertuples():
        level = "family (task)" if r.level == "family" else r.level
        groups = ", ".join(sorted(set(pb[(pb["level"] == r.level) & (pb["group"] != "all")]["group"]))) or "one group"
        rows.append(
            row(
                f"PB({names[r.a]} > {names[r.b]}), {level} level",
                f"{pct(r.pb)} [{pct(r.ci_low)}, {pct(r.ci_high)}]",
                instrument(r.targets.split()) + f"{r.pairs} pairs; mean loss {r.loss_a:.3f} vs {r.loss_b:.3f} (prior loss {r.prior_loss:.3f}); "
                f"accuracy {r.accuracy_a:.3f} vs {r.accuracy_b:.3f} (majority {r.majority_accuracy:.3f}); 95% bootstrap interval; groups: {groups}",
                PAPER_PB[(r.a, r.b)].get(r.level, "not reported"),
            )
        )
else:
    for claim in ("PB(In' > Ex), dataset / task / general", "PB(In' > In), dataset / task / general"):
        rows.append(row(claim, "not configured", "set hull in the config"))
if "edges" in snakemake.input.keys():
    edges = pd.read_parquet(snakemake.input.edges)
    e = edges.groupby(["kind", "distance", "point"], as_index=False)[["loss", "accuracy"]].mean()
    centre = e[e["kind"] == "centroid"]
    rand = e[e["kind"].str.startswith("random")].groupby("distance")[["loss", "accuracy"]].mean()
    far = rand.index.max()
    at = lambda frame, d: f"{frame.loc[d, 'loss']:.3f} (accuracy {frame.loc[d, 'accuracy']:.3f})"  # noqa: E731
    ours = [f"centroid {centre['loss'].mean():.3f} (accuracy {centre['accuracy'].mean():.3f})"]
    ours += [f"random directions: at 1 radius {at(rand, 1.0)}" if 1.0 in rand.index else "random directions", f"at {far:g} radii {at(rand, far)}"]
    for kind in ("toward zero", "toward pretrained"):
        way = e[e["kind"] == kind].groupby("distance")[["loss", "accuracy"]].mean()
        if len(way):
            last = way.index.max()
            ours.append(f"{kind}: " + ", ".join(f"at {d:.3g} radii {at(way, d)}" for d in ([1.0] if 1.0 in way.index and last != 1.0 else []) + [last]))
    first = edges.iloc[0]
    rows.append(
        row(
            "edges: loss from the centroid, random directions / toward the origin",
            "; ".join(ours),
            instrument(edges["target"]) + f"prior loss {edges.groupby('target')['prior_loss'].first().mean():.3f}; "
            f"majority accuracy {edges.groupby('target')['majority_accuracy'].first().mean():.3f}; 1 radius = {first['radius']:.3f} "
            f"= {first['radius'] / first['centroid_norm']:.4f} of the centroid's norm ({first['centroid_norm']:.1f}); the centroid lies "
            f"{first['centroid_distance_from_pretrained'] / first['radius']:.2f} radii from the pretrained model; mean over the region's datasets (and directions)",
            PAPER_EDGES,
        )
    )
bitfit = {r: read_json(snakemake.input[f"bitfit_{r}"]) for r in ("full", "few_shot") if f"bitfit_{r}" in snakemake.input.keys()}
if bitfit:
    for r, b in bitfit.items():
        examples = sorted(set(b["train_examples"].values()))
        sizes = f"{examples[0]}" if len(examples) == 1 else f"{examples[0]}-{examples[-1]}"
        note = (
            f"{len({x['seed'] for x in b['runs']})} seed(s); {sizes} training examples per dataset; counted over the {b['informative']} informative "
            f"datasets ({b['uninformative']} uninformative: both starts at the majority class); win / tie / loss {b['wins']} / {b['ties']} / {b['losses']}"
        )
        rows.append(
            row(
                f"centroid >= pretrained (BitFit), {r.replace('_', '-')}",
                f"{b['at_least_as_good']} of {b['informative']} informative datasets",
                note,
                PAPER_BITFIT[r]["at_least"],
            )
        )
        gain = f"{b['mean_gain']:+.2f} points" if b["informative"] else "none: no informative dataset"
        rows.append(
            row(
                f"centroid gain (BitFit), {r.replace('_', '-')}",
                gain,
                f"mean over informative datasets of the mean test-accuracy gain (over all {b['datasets']}: {b['mean_gain_all']:+.2f}); "
                "accuracies beside the majority class in the table",
                PAPER_BITFIT[r]["gain"],
            )
        )
else:
    for claim in ("centroid >= pretrained (BitFit)", "centroid gain, full / few-shot"):
        rows.append(row(claim, "not configured", "set centroid in the config"))
if "formation" in snakemake.input.keys():
    formation = read_json(snakemake.input.formation)
    for g in formation["groupings"]:
        clusters = (
            f"clusters from step {g['clusters_from_step']}"
            if g["clusters_from_step"] is not None
            else ("clusters at some steps only" if g["ever_clusters"] else "never clusters")
        )
        rows.append(
            row(
                f"region formation: first step at the final clustering accuracy, grouping {g['grouping']}",
                f"step {g['first_step_at_final']} (final one-to-one accuracy {pct(g['final_accuracy'])})",
                f"{clusters} (one-to-one accuracy above chance, p95 {pct(g['final_chance'])} at the last step, and closer within groups "
                f"than between); snapshot steps {', '.join(map(str, formation['steps']))}",
                "not in the paper (it shows only the final models)",
            )
        )
    beats, beats_train = formation["all_models_beat_prior_at_steps"], formation["train_reading_all_models_beat_prior_at_steps"]
    rows.append(
        row(
            f"region formation: the snapshot steps at which every model beats the prior predictor on its own dataset (head fitted on the {formation['probe_on']} split)",
            "; ".join(f"{d} {', '.join(map(str, k)) if k else 'none'}" for d, k in beats.items()),
            f"generalized loss of each snapshot (head fitted on the {formation['probe_on']} split, L2 strength cross-validated there per snapshot) "
            "beside the constant predictor's loss; at the last step (mean over seeds): "
            + "; ".join(
                f"{d} loss {r['loss']:.3f} vs prior {r['prior_loss']:.3f}, accuracy {r['accuracy']:.3f} vs majority {r['majority_accuracy']:.3f}"
                for d, r in formation["last_step"].items()
            )
            + " (results/tables/formation.md)",
            "not in the paper",
        )
    )
    rows.append(
        row(
            "region formation, the paper's literal reading (head fitted on the train split): the snapshot steps at which every model beats the prior",
            "; ".join(f"{d} {', '.join(map(str, k)) if k else 'none'}" for d, k in beats_train.items()),
            "at the last step (mean over seeds): "
            + "; ".join(
                f"{d} loss {r['train_reading_loss']:.3f} vs prior {r['train_reading_prior_loss']:.3f}, "
                f"train-fold loss {r['train_cv_loss']:.3f} vs {r['fit_cv_loss']:.3f} on the {formation['probe_on']} split's folds"
                for d, r in formation["last_step"].items()
            )
            + " (a train-fold loss far below the other: the body memorised its training examples)",
            "not in the paper",
        )
    )
datasets = sorted(set(zoo["dataset"]))
preamble = (
    f"{len(zoo)} finetuned models of {len(datasets)} datasets ({', '.join(datasets)}). "
    "Paper numbers: Gueta et al. (2023), methods.md §9. At CPU scale some effects may be weak or absent; "
    "the numbers below are as measured."
)
Path(snakemake.output.md).write_text(markdown(rows, "Ours vs the paper", preamble))
write_json(snakemake.output.json, {"models": len(zoo), "datasets": datasets, "rows": rows})
write_job_provenance(snakemake, snakemake.output.md, zoo.to_dict("records"))
