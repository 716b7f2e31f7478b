# Interpolation and extrapolation between pairs of finetuned models (Fig. 3, 5, 10, 12, 13):
# one job per pair evaluates the whole alpha grid on the pair set's target datasets.


rule path:
    input:
        unpack(path_inputs),
    output:
        table="results/paths/{pairset}/pair{pair}.parquet",
    log:
        "results/logs/path/{pairset}/pair{pair}.log",
    benchmark:
        "results/benchmarks/path/{pairset}/pair{pair}.tsv"
    conda:
        "../../envs/finetune.yaml"
    threads: 1
    resources:
        gpu=gpus("path"),
        mem_mb=points_mem_mb("path", configured_chunk(config), loaded=2),
        runtime=lambda wildcards, attempt: 240 * attempt,
    params:
        pair=lambda wildcards: PAIRS[wildcards.pairset][int(wildcards.pair)],
        targets=lambda wildcards: path_targets(wildcards.pairset),
        alphas=lambda wildcards: plan.path_alphas(config["paths"]),
        loss=config["loss"],
    script:
        "../scripts/path.py"


localrules:
    path_stats,
    plot_paths,


rule path_stats:
    input:
        tables=path_tables(),
    output:
        stats="results/paths/path_stats.json",
    log:
        "results/logs/path_stats.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/path_stats.py"


rule plot_paths:
    input:
        tables=path_tables(),
        zoo=rules.zoo.output.table,
    output:
        fig3=report(
            "results/figures/fig3_interpolation.png",
            caption="../report/fig3.rst",
            category="Generalized loss",
            labels={"figure": "Fig. 3"},
        ),
        fig3_svg="results/figures/fig3_interpolation.svg",
        fig3_svg_provenance="results/figures/fig3_interpolation.svg.provenance.json",
        fig3_provenance="results/figures/fig3_interpolation.png.provenance.json",
        fig5=report(
            "results/figures/fig5_extrapolation.png",
            caption="../report/fig5.rst",
            category="Generalized loss",
            labels={"figure": "Fig. 5"},
        ),
        fig5_svg="results/figures/fig5_extrapolation.svg",
        fig5_svg_provenance="results/figures/fig5_extrapolation.svg.provenance.json",
        fig5_provenance="results/figures/fig5_extrapolation.png.provenance.json",
        per_dataset=report(
            "results/figures/paths_per_dataset.png",
            caption="../report/paths_per_dataset.rst",
            category="Generalized loss",
            labels={"figure": "Fig. 10/12/13"},
        ),
        per_dataset_svg="results/figures/paths_per_dataset.svg",
        per_dataset_svg_provenance="results/figures/paths_per_dataset.svg.provenance.json",
        per_dataset_provenance="results/figures/paths_per_dataset.png.provenance.json",
    log:
        "results/logs/plot_paths.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        pairs={k: [list(map(list, p)) for p in v] for k, v in PAIRS.items()},
        figures=config["figures"],
    script:
        "../scripts/plot_paths.py"
