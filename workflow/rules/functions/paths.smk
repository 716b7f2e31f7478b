# Input functions and settings of the rules in workflow/rules/paths.smk (kept apart from the
# rules, as Snakemake's linter asks).


PAIRS = plan.pair_sets(config)


def path_inputs(wildcards):
    (a, sa), (b, sb) = PAIRS[wildcards.pairset][int(wildcards.pair)]
    data = data_inputs(path_targets(wildcards.pairset))
    return {
        "a": model_folder((a, sa)),
        "b": model_folder((b, sb)),
        "base": "resources/base_model",
        "data": data,
        **regularization_inputs(path_targets(wildcards.pairset)),
    }


def path_targets(pairset):
    return plan.path_targets(config, pairset)


def path_tables():
    return [
        f"results/paths/{name}/pair{i}.parquet"
        for name, pairs in PAIRS.items()
        for i in range(len(pairs))
    ]
