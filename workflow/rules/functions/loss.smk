# Input functions and settings of the rules in workflow/rules/loss.smk (kept apart from the
# rules, as Snakemake's linter asks).


def own_models(dataset):
    """The zoo models finetuned on `dataset` (dataset, seed)."""
    return [(dataset, s) for s in seeds_of(config, dataset)]
