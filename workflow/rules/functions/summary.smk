# Input functions and settings of the rules in workflow/rules/summary.smk (kept apart from the
# rules, as Snakemake's linter asks).


def summary_inputs(wildcards):
    """The zoo table and every dataset's info.json (majority-class baselines)."""
    return {
        "zoo": rules.zoo.output.table,
        "info": [f"results/data/{d}/info.json" for d in config["zoo"]["datasets"]],
    }


def summary_extra_inputs(wildcards):
    """Later stages' statistics that results/summary.md reports when they are configured."""
    extra = {"calibration": rules.calibration.output.csv}
    if PAIRS:
        extra["paths"] = "results/paths/path_stats.json"
    if HULL:
        extra["hull"] = "results/tables/probability_of_better.csv"
    if EDGES:
        extra["edges"] = "results/hull/edges.parquet"
    for r in BITFIT_REGIMES:
        extra[f"bitfit_{r}"] = f"results/tables/bitfit_{r}.json"
    if SNAPSHOTS:
        extra["formation"] = "results/formation/summary.json"
    return extra


def all_targets():
    """The default target's files beyond the zoo: every configured stage's tables and figures."""
    targets = (
        [rules.summary.output.md, rules.calibration.output.csv]
        + ([rules.plot_paths.output.fig3] if PAIRS else [])
        + [f"results/figures/tsne_{g}.png" for g in config["geometry"]["groupings"]]
        + ([rules.plot_hull.output.png] if HULL else [])
        + ([rules.plot_edges.output.png] if EDGES else [])
        + [f"results/tables/bitfit_{r}.csv" for r in BITFIT_REGIMES]
        + [f"results/figures/bitfit_gain_{r}.png" for r in BITFIT_REGIMES]
    )
    if config["geometry"]["table1"]:
        targets.append(rules.table1.output.csv)
    return targets + formation_targets()
