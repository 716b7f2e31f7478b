# Regions as they form (issue 16): every finetune's snapshots flattened like a model, the zoo's
# Gram at each snapshot step (computed exactly as the final models' Gram), each model's
# direction settling, and the generalized loss of every snapshot on its own dataset (its L2
# strength cross-validated on the train split for each snapshot);
# then the formation table and figures. Planned only when finetune.snapshots is set.


rule flatten_snapshot:
    input:
        model=rules.finetune.output.model,
        reference=rules.flatten_pretrained.output.weights,
    output:
        weights=directory("results/formation/weights/{dataset}/seed{seed}/step{step}"),
    log:
        "results/logs/flatten_snapshot/{dataset}/seed{seed}/step{step}.log",
    benchmark:
        "results/benchmarks/flatten_snapshot/{dataset}/seed{seed}/step{step}.tsv"
    wildcard_constraints:
        step=r"\d+",
    conda:
        "../../envs/finetune.yaml"
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=30,
    params:
        sizes=config["flatten"],
        base_model=config["base_model"],
        families=lambda wildcards: config["datasets"][wildcards.dataset]["families"],
        derived_from=lambda wildcards: config["datasets"][wildcards.dataset].get(
            "derived_from"
        ),
    script:
        "../scripts/flatten.py"


rule formation_gram:
    input:
        weights=lambda wildcards: snapshot_folders(MEMBERS, [int(wildcards.step)]),
        pretrained=rules.flatten_pretrained.output.weights,
    output:
        gram="results/formation/gram/step{step}.parquet",
    log:
        "results/logs/formation_gram/step{step}.log",
    benchmark:
        "results/benchmarks/formation_gram/step{step}.tsv"
    wildcard_constraints:
        step=r"\d+",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=lambda wildcards, attempt: gram_part_mem_mb() * attempt,
        runtime=60,
    params:
        parts=config["geometry"]["gram_parts"],
        models=[model_id(*m) for m in MEMBERS],
    script:
        "../scripts/formation_gram.py"


rule formation_settling:
    input:
        weights=lambda wildcards: snapshot_folders(
            [(wildcards.dataset, int(wildcards.seed))], SNAPSHOTS
        ),
        pretrained=rules.flatten_pretrained.output.weights,
    output:
        table="results/formation/settling/{dataset}/seed{seed}.parquet",
    log:
        "results/logs/formation_settling/{dataset}/seed{seed}.log",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=lambda wildcards, attempt: gram_part_mem_mb() * attempt,
        runtime=30,
    params:
        steps=SNAPSHOTS,
    script:
        "../scripts/formation_settling.py"


rule formation_loss:
    input:
        models=lambda wildcards: model_folders(
            "models", plan.members(config, [wildcards.dataset])
        ),
        base="resources/base_model",
        data=lambda wildcards: data_inputs(
            [wildcards.dataset], ("train", "probe", "test")
        ),
    output:
        table="results/formation/loss/{dataset}.parquet",
    log:
        "results/logs/formation_loss/{dataset}.log",
    benchmark:
        "results/benchmarks/formation_loss/{dataset}.tsv"
    conda:
        "../../envs/finetune.yaml"
    threads: 1
    resources:
        gpu=gpus("formation_loss"),
        mem_mb=points_mem_mb("formation_loss", 1),
        runtime=lambda wildcards, attempt: loss_runtime(
            len(seeds_of(config, wildcards.dataset)) * len(SNAPSHOTS), attempt
        ),
    params:
        loss=config["loss"],
        steps=SNAPSHOTS,
        models=lambda wildcards: plan.members(config, [wildcards.dataset]),
    script:
        "../scripts/formation_loss.py"


localrules:
    formation_table,
    plot_formation,


rule formation_table:
    input:
        grams=expand("results/formation/gram/step{step}.parquet", step=SNAPSHOTS),
        settling=[f"results/formation/settling/{d}/seed{s}.parquet" for d, s in MEMBERS],
        loss=expand(
            "results/formation/loss/{dataset}.parquet", dataset=main_datasets(config)
        ),
        zoo=rules.zoo.output.table,
    output:
        csv=report(
            "results/tables/formation.csv",
            caption="../report/formation.rst",
            category="Region formation",
            labels={"table": "formation"},
        ),
        models="results/tables/formation_models.csv",
        first="results/tables/formation_first_step.csv",
        md="results/tables/formation.md",
        json="results/formation/summary.json",
        provenance="results/tables/formation.csv.provenance.json",
        models_provenance="results/tables/formation_models.csv.provenance.json",
        first_provenance="results/tables/formation_first_step.csv.provenance.json",
        md_provenance="results/tables/formation.md.provenance.json",
    log:
        "results/logs/formation_table.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        steps=SNAPSHOTS,
        groupings=config["geometry"]["groupings"],
        random_state=config["geometry"]["random_state"],
    script:
        "../scripts/formation_table.py"


rule plot_formation:
    input:
        csv=rules.formation_table.output.csv,
        models=rules.formation_table.output.models,
    output:
        png=report(
            "results/figures/formation.png",
            caption="../report/formation.rst",
            category="Region formation",
            labels={"figure": "clustering along training"},
        ),
        svg="results/figures/formation.svg",
        settling=report(
            "results/figures/formation_settling.png",
            caption="../report/formation.rst",
            category="Region formation",
            labels={"figure": "direction settling and the loss along training"},
        ),
        settling_svg="results/figures/formation_settling.svg",
        provenance="results/figures/formation.png.provenance.json",
        svg_provenance="results/figures/formation.svg.provenance.json",
        settling_provenance="results/figures/formation_settling.png.provenance.json",
        settling_svg_provenance="results/figures/formation_settling.svg.provenance.json",
    log:
        "results/logs/plot_formation.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
    script:
        "../scripts/plot_formation.py"
