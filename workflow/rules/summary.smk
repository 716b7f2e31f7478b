# Tables and figures about the zoo: how well each finetune learned its dataset.


localrules:
    finetune_summary,
    plot_finetune_accuracy,
    summary,


rule finetune_summary:
    input:
        unpack(summary_inputs),
    output:
        csv=report(
            "results/tables/finetune_summary.csv",
            caption="../report/finetune_summary.rst",
            category="Finetuning",
            labels={"table": "finetune summary"},
        ),
        md="results/tables/finetune_summary.md",
        md_provenance="results/tables/finetune_summary.md.provenance.json",
        provenance="results/tables/finetune_summary.csv.provenance.json",
    log:
        "results/logs/finetune_summary.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        datasets=config["zoo"]["datasets"],
    script:
        "../scripts/finetune_summary.py"


rule plot_finetune_accuracy:
    input:
        unpack(summary_inputs),
    output:
        png=report(
            "results/figures/finetune_accuracy.png",
            caption="../report/finetune_accuracy.rst",
            category="Finetuning",
            labels={"figure": "test accuracy per dataset"},
        ),
        svg="results/figures/finetune_accuracy.svg",
        svg_provenance="results/figures/finetune_accuracy.svg.provenance.json",
        provenance="results/figures/finetune_accuracy.png.provenance.json",
    log:
        "results/logs/plot_finetune_accuracy.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        datasets=config["zoo"]["datasets"],
        figures=config["figures"],
    script:
        "../scripts/plot_finetune_accuracy.py"


rule summary:
    input:
        unpack(summary_extra_inputs),
        metrics=expand(
            "results/geometry/clusters/{grouping}/metrics.json",
            grouping=config["geometry"]["groupings"],
        ),
        scores=expand(
            "results/geometry/clusters/{grouping}/group_scores.csv",
            grouping=config["geometry"]["groupings"],
        ),
        zoo=rules.zoo.output.table,
    output:
        md=report(
            "results/summary.md",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "ours vs the paper"},
        ),
        json="results/summary.json",
        provenance="results/summary.md.provenance.json",
    log:
        "results/logs/summary.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        groupings=config["geometry"]["groupings"],
        table1=config["geometry"]["table1"],
    script:
        "../scripts/summary.py"
