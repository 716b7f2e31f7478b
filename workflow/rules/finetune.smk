# One seeded finetune per (dataset, seed): a GPU job on a cluster, resumable after preemption.


rule finetune:
    input:
        base=rules.base_model.output.folder,
        train=rules.prepare_data.output.train,
        dev=rules.prepare_data.output.dev,
        test=rules.prepare_data.output.test,
        info=rules.prepare_data.output.info,
    output:
        model=directory("results/models/{dataset}/seed{seed}"),
    log:
        "results/logs/finetune/{dataset}/seed{seed}.log",
    benchmark:
        "results/benchmarks/finetune/{dataset}/seed{seed}.tsv"
    conda:
        "../../envs/finetune.yaml"
    # [choice] one thread: two finetunes at once on 2 cores train 1.18x faster than one on two
    # threads (small matrices scale poorly across threads), and a finetune's weights do not
    # depend on the machine's core count. A cluster profile sets more (GPU jobs feed the GPU).
    threads: 1
    resources:
        gpu=gpus("finetune"),
        mem_mb=lambda wildcards, attempt: 16000 * attempt,
        runtime=lambda wildcards, attempt: 240 * attempt,
    params:
        hyperparameters=lambda wildcards: finetune_settings(config, wildcards.dataset),
        # Resume state lives outside the outputs, so Snakemake never deletes it on a retry.
        state="results/resume/{dataset}/seed{seed}",
    script:
        "../scripts/finetune.py"
