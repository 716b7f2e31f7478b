# Raw data -> de-duplicated, seeded, stratified train/dev/probe/test splits (Parquet via HF
# datasets). The probe split is read by the loss stages only, never by a finetune.


localrules:
    prepare_data,


rule prepare_data:
    input:
        unpack(dataset_source_input),
    output:
        train="results/data/{dataset}/train.parquet",
        dev="results/data/{dataset}/dev.parquet",
        probe="results/data/{dataset}/probe.parquet",
        test="results/data/{dataset}/test.parquet",
        info="results/data/{dataset}/info.json",
    log:
        "results/logs/prepare_data/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    params:
        entry=lambda wildcards: data_entry(config, wildcards.dataset),
        settings=lambda wildcards: dataset_settings(config, wildcards.dataset),
    script:
        "../scripts/prepare_data.py"
