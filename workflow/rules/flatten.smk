# Body weights -> Parquet shards (the pretrained reference once, then every finetuned model),
# and the zoo table.


rule flatten_pretrained:
    input:
        base=rules.base_model.output.folder,
    output:
        weights=directory("results/pretrained/weights"),
    log:
        "results/logs/flatten_pretrained.log",
    conda:
        "../../envs/finetune.yaml"
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=30,
    params:
        sizes=config["flatten"],
        base_model=config["base_model"],
    script:
        "../scripts/flatten.py"


rule flatten:
    input:
        model=rules.finetune.output.model,
        reference=rules.flatten_pretrained.output.weights,
    output:
        weights=directory("results/weights/{dataset}/seed{seed}"),
    log:
        "results/logs/flatten/{dataset}/seed{seed}.log",
    benchmark:
        "results/benchmarks/flatten/{dataset}/seed{seed}.tsv"
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


localrules:
    zoo,


rule zoo:
    input:
        models=model_folders("models"),
        weights=model_folders("weights"),
        pretrained=rules.flatten_pretrained.output.weights,
    output:
        table="results/zoo.parquet",
        provenance="results/zoo.parquet.provenance.json",
    log:
        "results/logs/zoo.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        members=MEMBERS,
        datasets={
            d: {
                k: config["datasets"][d].get(k)
                for k in ("families", "derived_from", "size_of", "train_size")
            }
            for d in config["zoo"]["datasets"]
        },
    script:
        "../scripts/zoo.py"
