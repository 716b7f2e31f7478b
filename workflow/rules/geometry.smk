# Task-vector geometry: the Gram matrix streamed over the weight shards (map over position
# ranges, then reduce), spectral clustering and t-SNE per grouping, Fig. 2 and Table 1.


rule gram_part:
    input:
        weights=model_folders("weights"),
        pretrained=rules.flatten_pretrained.output.weights,
    output:
        part="results/geometry/gram/part{part}.npy",
    log:
        "results/logs/gram_part/part{part}.log",
    benchmark:
        "results/benchmarks/gram_part/part{part}.tsv"
    conda:
        "../../envs/analysis.yaml"
    resources:
        # One block (a row group) of every model at a time: float32 read + float64 copy.
        mem_mb=lambda wildcards, attempt: gram_part_mem_mb() * attempt,
        runtime=60,
    params:
        parts=config["geometry"]["gram_parts"],
    script:
        "../scripts/gram_part.py"


rule gram:
    input:
        parts=expand(
            "results/geometry/gram/part{part}.npy",
            part=range(config["geometry"]["gram_parts"]),
        ),
        zoo=rules.zoo.output.table,
    output:
        gram="results/geometry/gram.parquet",
        cosine="results/geometry/cosine.parquet",
        euclidean="results/geometry/euclidean.parquet",
        norms="results/geometry/norms.parquet",
    log:
        "results/logs/gram.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/gram.py"


rule cluster:
    input:
        cosine=rules.gram.output.cosine,
        zoo=rules.zoo.output.table,
    output:
        metrics="results/geometry/clusters/{grouping}/metrics.json",
        assignments="results/geometry/clusters/{grouping}/assignments.parquet",
        scores="results/geometry/clusters/{grouping}/group_scores.csv",
    log:
        "results/logs/cluster/{grouping}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        spec=lambda wildcards: config["geometry"]["groupings"][wildcards.grouping],
        random_state=config["geometry"]["random_state"],
    script:
        "../scripts/cluster.py"


localrules:
    plot_tsne,
    table1,


rule plot_tsne:
    input:
        assignments=rules.cluster.output.assignments,
        metrics=rules.cluster.output.metrics,
        zoo=rules.zoo.output.table,
    output:
        png=report(
            "results/figures/tsne_{grouping}.png",
            caption="../report/tsne.rst",
            category="Geometry",
            subcategory="t-SNE of task vectors (Fig. 2; Fig. 7/8 for the size experiment)",
            labels={"grouping": "{grouping}"},
        ),
        svg="results/figures/tsne_{grouping}.svg",
        svg_provenance="results/figures/tsne_{grouping}.svg.provenance.json",
        provenance="results/figures/tsne_{grouping}.png.provenance.json",
    log:
        "results/logs/plot_tsne/{grouping}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
        spec=lambda wildcards: config["geometry"]["groupings"][wildcards.grouping],
    script:
        "../scripts/plot_tsne.py"


rule table1:
    input:
        with_domain=table1_input("with_domain"),
        without_domain=table1_input("without_domain"),
        zoo=rules.zoo.output.table,
    output:
        csv=report(
            "results/tables/table1_f1.csv",
            caption="../report/table1.rst",
            category="Geometry",
            labels={"table": "Table 1"},
        ),
        md="results/tables/table1_f1.md",
        md_provenance="results/tables/table1_f1.md.provenance.json",
        provenance="results/tables/table1_f1.csv.provenance.json",
    log:
        "results/logs/table1.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        table1=config["geometry"]["table1"],
    script:
        "../scripts/table1.py"
