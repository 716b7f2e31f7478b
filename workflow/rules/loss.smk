# The instrument's calibration (methods.md §4): every zoo model scored by the generalized loss
# on the dataset it was finetuned on, beside the prior predictor's loss. A model that does not
# beat the prior there means the probe, not the model, is being measured on that dataset. The
# same job chooses the target's L2 strength on its train split (loss.choose: per_target), which
# every loss job scored on that target then uses. The size experiment's variants are left out:
# no loss stage uses them.


rule calibrate:
    input:
        models=lambda wildcards: model_folders(
            "models", plan.members(config, [wildcards.dataset])
        ),
        base="resources/base_model",
        data=lambda wildcards: data_inputs(
            [wildcards.dataset], ("train", "probe", "test")
        ),
    output:
        json="results/loss/calibration/{dataset}.json",
    log:
        "results/logs/calibrate/{dataset}.log",
    benchmark:
        "results/benchmarks/calibrate/{dataset}.tsv"
    conda:
        "../../envs/finetune.yaml"
    threads: 1
    resources:
        gpu=gpus("calibrate"),
        mem_mb=points_mem_mb("calibrate", 1),
        runtime=lambda wildcards, attempt: loss_runtime(
            len(seeds_of(config, wildcards.dataset)), attempt
        ),
    params:
        loss=config["loss"],
        models=lambda wildcards: [
            model_id(*m) for m in plan.members(config, [wildcards.dataset])
        ],
    script:
        "../scripts/calibrate.py"


localrules:
    calibration,


rule calibration:
    input:
        targets=expand(
            "results/loss/calibration/{dataset}.json", dataset=main_datasets(config)
        ),
        zoo=rules.zoo.output.table,
    output:
        csv=report(
            "results/loss/calibration.csv",
            caption="../report/calibration.rst",
            category="Generalized loss",
            labels={"table": "calibration"},
        ),
        md="results/loss/calibration.md",
        md_provenance="results/loss/calibration.md.provenance.json",
        provenance="results/loss/calibration.csv.provenance.json",
    log:
        "results/logs/calibration.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/calibration.py"
