# Inside and outside the region (Fig. 4) and its edges seen from the centroid (Fig. 11): one
# job per piece of a (granularity, group, set) of points (hull.max_evaluations; one piece by
# default), a local job gathering each set's pieces, one job for the edges; statistics and
# figures aggregate them.


rule hull_set:
    input:
        unpack(hull_set_inputs),
    output:
        table="results/hull/{level}/{group}/{set}/piece{piece}.parquet",
    log:
        "results/logs/hull/{level}/{group}/{set}/piece{piece}.log",
    benchmark:
        "results/benchmarks/hull/{level}/{group}/{set}/piece{piece}.tsv"
    # long jobs first once ready (a long job started last is the run's tail)
    priority: 5
    conda:
        "../../envs/finetune.yaml"
    threads: 1
    resources:
        gpu=gpus("hull_set"),
        mem_mb=points_mem_mb("hull_set", configured_chunk(config)),
        runtime=hull_set_runtime,
    params:
        group=lambda wildcards: HULL[(wildcards.level, wildcards.group)],
        set=hull_set_job,
        # what the points depend on; hull.chunk (memory only) is read from the config
        hull=lambda wildcards: {
            k: config["hull"][k] for k in ("seed", "max_points", "general")
        },
        loss=config["loss"],
        points=hull_piece_points,
    script:
        "../scripts/hull_set.py"


localrules:
    hull_set_table,


rule hull_set_table:
    input:
        pieces=hull_set_pieces,
    output:
        table="results/hull/{level}/{group}/{set}.parquet",
    log:
        "results/logs/hull/{level}/{group}/{set}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        points=lambda wildcards: hull_set_job(wildcards)["count"],
    script:
        "../scripts/hull_set_table.py"


rule edges:
    input:
        unpack(edges_inputs),
    output:
        table="results/hull/edges.parquet",
    log:
        "results/logs/hull/edges.log",
    benchmark:
        "results/benchmarks/hull/edges.tsv"
    # long jobs first once ready (a long job started last is the run's tail)
    priority: 10
    conda:
        "../../envs/finetune.yaml"
    threads: 1
    resources:
        gpu=gpus("edges"),
        mem_mb=points_mem_mb("edges", configured_chunk(config)),
        runtime=edges_runtime,
    params:
        region=lambda wildcards: plan.edge_region(config),
        edges=lambda wildcards: config["hull"]["edges"],
        seed=lambda wildcards: config["hull"]["seed"],
        loss=config["loss"],
    script:
        "../scripts/edges.py"


localrules:
    hull_stats,
    plot_hull,
    plot_edges,


rule hull_stats:
    input:
        tables=hull_tables(),
        zoo=rules.zoo.output.table,
    output:
        csv=report(
            "results/tables/probability_of_better.csv",
            caption="../report/probability_of_better.rst",
            category="Generalized loss",
            labels={"table": "probability of better"},
        ),
        md="results/tables/probability_of_better.md",
        md_provenance="results/tables/probability_of_better.md.provenance.json",
        provenance="results/tables/probability_of_better.csv.provenance.json",
    log:
        "results/logs/hull_stats.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        seed=lambda wildcards: config["hull"]["seed"],
        bootstrap=lambda wildcards: config["hull"]["bootstrap"],
    script:
        "../scripts/hull_stats.py"


rule plot_hull:
    input:
        tables=hull_tables(),
        stats=rules.hull_stats.output.csv,
        zoo=rules.zoo.output.table,
    output:
        png=report(
            "results/figures/fig4_hull.png",
            caption="../report/fig4.rst",
            category="Generalized loss",
            labels={"figure": "Fig. 4"},
        ),
        svg="results/figures/fig4_hull.svg",
        svg_provenance="results/figures/fig4_hull.svg.provenance.json",
        provenance="results/figures/fig4_hull.png.provenance.json",
    log:
        "results/logs/plot_hull.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
    script:
        "../scripts/plot_hull.py"


rule plot_edges:
    input:
        table=rules.edges.output.table,
        zoo=rules.zoo.output.table,
    output:
        png=report(
            "results/figures/fig11_edges.png",
            caption="../report/fig11.rst",
            category="Generalized loss",
            labels={"figure": "Fig. 11"},
        ),
        svg="results/figures/fig11_edges.svg",
        svg_provenance="results/figures/fig11_edges.svg.provenance.json",
        provenance="results/figures/fig11_edges.png.provenance.json",
    log:
        "results/logs/plot_edges.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        figures=config["figures"],
    script:
        "../scripts/plot_edges.py"
