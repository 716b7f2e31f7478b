"""results/summary.md (and summary.json): our numbers beside the paper's (methods.md §9)."""

import json
from pathlib import Path

import pandas as pd

from weightspace.comparison import markdown, pct, row
from weightspace.io import read_json, write_json
from weightspace.logs import to_log_file
from weightspace.provenance import write_provenance
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
    paper = {"dataset": "98%", "family": "90% (NLI/Sentiment/Topic)", "size": "clusters follow the dataset, not the size"}[spec["by"]]
    ours = f"{pct(m['accuracy_majority'])} majority rule, {pct(m['accuracy_hungarian'])} one-to-one"
    note = f"{m['models']} models, {m['groups']} groups; mean cosine within groups {m['cosine_within']:.3f}, between {m['cosine_between']:.3f}"
    if spec["by"] != "dataset" and m.get("cosine_within_other_dataset") is not None:
        note += f"; same group, other dataset {m['cosine_within_other_dataset']:.3f}"
    rows.append(row(claim, ours, note, paper))
    f1 = pd.read_csv(scores_path)
    rows.append(row(f"per-group F1, grouping {m['grouping']}", ", ".join(f"{g} {100 * v:.0f}" for g, v in zip(f1["group"], f1["f1"])), "majority-rule labels", "Table 1 (see below)"))
if "paths" in snakemake.input.keys():
    for name, st in read_json(snakemake.input.paths).items():
        rows.append(row(f"{name.replace('_', ' ')} pairs: lowest loss strictly inside (0, 1)", f"{pct(st['share_min_inside'])} of {st['pairs']} pairs",
                        "loss averaged over the pair set's targets", "often (at or below the endpoints)"))
        rows.append(row(f"{name.replace('_', ' ')} pairs: loss at alpha 0.5 vs mean of endpoints", f"{st['loss_mid']:.3f} vs {st['loss_endpoints']:.3f}", "", "at or below"))
        if st["loss_alpha_max"] is not None:
            rows.append(row(f"{name.replace('_', ' ')} pairs: loss at alpha {st['alpha_max']:g} and {st['alpha_min']:g} vs endpoints",
                            f"{st['loss_alpha_max']:.3f} and {st['loss_alpha_min']:.3f} vs {st['loss_endpoints']:.3f}", "", "rises steeply outside [0, 1]"))
for claim in ("Table 1 F1 with the Twitter domain group", "Table 1 F1 without it"):
    rows.append(row(claim, "see per-group F1 rows", "our families differ from the paper's"))
for claim in ("PB(In' > Ex), dataset / task / general", "PB(In' > In), dataset / task / general", "centroid >= pretrained (BitFit)", "centroid gain, full / few-shot"):
    rows.append(row(claim, "not computed yet", "a later stage adds it"))
datasets = sorted(set(zoo["dataset"]))
preamble = (
    f"{len(zoo)} finetuned models of {len(datasets)} datasets ({', '.join(datasets)}). "
    "Paper numbers: Gueta et al. (2023), methods.md §9. At CPU scale some effects may be weak or absent; "
    "the numbers below are as measured."
)
Path(snakemake.output.md).write_text(markdown(rows, "Ours vs the paper", preamble))
write_json(snakemake.output.json, {"models": len(zoo), "datasets": datasets, "rows": rows})
write_provenance(
    snakemake.output.md, snakemake.rule,
    [*snakemake.input.metrics, *snakemake.input.scores, snakemake.input.zoo, *([snakemake.input.paths] if "paths" in snakemake.input.keys() else [])],
    dict(snakemake.params), Path(snakemake.scriptdir), zoo.to_dict("records"), snakemake.output.provenance, snakemake.config,
)
