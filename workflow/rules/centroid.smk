# The region's centroid as a starting point (Fig. 6, 14; Tables 2, 3): one centroid checkpoint
# per target dataset (its own models left out), BitFit runs from the centroid and from the
# pretrained model per (regime, dataset, seed), and the tables and figures that compare them.


rule centroid:
    input:
        unpack(centroid_inputs),
    output:
        model=directory("results/centroids/{dataset}"),
    log:
        "results/logs/centroid/{dataset}.log",
    conda:
        "../../envs/finetune.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    params:
        members=lambda wildcards: plan.centroid_members(config, wildcards.dataset),
    script:
        "../scripts/centroid.py"


rule bitfit:
    input:
        unpack(bitfit_inputs),
    output:
        model=directory("results/bitfit/{regime}/{start}/{dataset}/seed{seed}"),
    log:
        "results/logs/bitfit/{regime}/{start}/{dataset}/seed{seed}.log",
    benchmark:
        "results/benchmarks/bitfit/{regime}/{start}/{dataset}/seed{seed}.tsv"
    conda:
        "../../envs/finetune.yaml"
    threads: 1
    resources:
        gpu=gpus("bitfit"),
        mem_mb=lambda wildcards, attempt: 16000 * attempt,
        runtime=lambda wildcards, attempt: 240 * attempt,
    params:
        hyperparameters=lambda wildcards: bitfit_settings(wildcards.dataset),
        few_shot=lambda wildcards: (
            config["centroid"]["few_shot"] if wildcards.regime == "few_shot" else None
        ),
        state="results/resume/bitfit/{regime}/{start}/{dataset}/seed{seed}",
        keep_weights=lambda wildcards: CENTROID["keep_weights"],
    script:
        "../scripts/bitfit.py"


localrules:
    bitfit_table,
    plot_bitfit_gain,


rule bitfit_table:
    input:
        runs=bitfit_runs,
        info=lambda wildcards: [
            f"results/data/{d}/info.json" for d in plan.centroid_targets(config)
        ],
        zoo=rules.zoo.output.table,
    output:
        csv=report(
            "results/tables/bitfit_{regime}.csv",
            caption="../report/bitfit_table.rst",
            category="Centroid as a starting point",
            labels=lambda wildcards: {
                "table": {"full": "Table 2", "few_shot": "Table 3"}[wildcards.regime]
            },
        ),
        md="results/tables/bitfit_{regime}.md",
        md_provenance="results/tables/bitfit_{regime}.md.provenance.json",
        json="results/tables/bitfit_{regime}.json",
        json_provenance="results/tables/bitfit_{regime}.json.provenance.json",
        provenance="results/tables/bitfit_{regime}.csv.provenance.json",
    log:
        "results/logs/bitfit_table_{regime}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/bitfit_table.py"


rule plot_bitfit_gain:
    input:
        table=rules.bitfit_table.output.csv,
        zoo=rules.zoo.output.table,
    output:
        png=report(
            "results/figures/bitfit_gain_{regime}.png",
            caption="../report/bitfit_gain.rst",
            category="Centroid as a starting point",
            labels=lambda wildcards: {
                "figure": {"full": "Fig. 6", "few_shot": "Fig. 14"}[wildcards.regime]
            },
        ),
        svg="results/figures/bitfit_gain_{regime}.svg",
        svg_provenance="results/figures/bitfit_gain_{regime}.svg.provenance.json",
        provenance="results/figures/bitfit_gain_{regime}.png.provenance.json",
    log:
        "results/logs/plot_bitfit_gain_{regime}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
    script:
        "../scripts/plot_bitfit_gain.py"
