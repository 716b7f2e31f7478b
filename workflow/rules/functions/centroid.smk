# Input functions and settings of the rules in workflow/rules/centroid.smk (kept apart from the
# rules, as Snakemake's linter asks).


CENTROID = config.get("centroid")


BITFIT_REGIMES = (
    [r for r in plan.REGIMES if r == "full" or CENTROID["few_shot"] is not None]
    if CENTROID
    else []
)


def centroid_inputs(wildcards):
    return {
        "base": "resources/base_model",
        "models": model_folders(
            "models", plan.centroid_members(config, wildcards.dataset)
        ),
    }


def bitfit_inputs(wildcards):
    start = (
        "resources/base_model"
        if wildcards.start == "pretrained"
        else f"results/centroids/{wildcards.dataset}"
    )
    return {
        "start": start,
        **{
            split: f"results/data/{wildcards.dataset}/{split}.parquet"
            for split in ("train", "dev", "test")
        },
        "info": f"results/data/{wildcards.dataset}/info.json",
    }


def bitfit_settings(dataset):
    """BitFit's hyperparameters: the dataset's finetune settings (no snapshots), then
    centroid.finetune."""
    return {
        **{
            k: v
            for k, v in finetune_settings(config, dataset).items()
            if k != "snapshots"
        },
        **CENTROID["finetune"],
        "trainable": "bitfit",
    }


def bitfit_runs(wildcards):
    return [
        f"results/bitfit/{wildcards.regime}/{start}/{d}/seed{s}"
        for d in plan.centroid_targets(config)
        for start in plan.STARTS
        for s in CENTROID["seeds"]
    ]
