# Input functions and settings of the rules in workflow/rules/data.smk (kept apart from the
# rules, as Snakemake's linter asks).


def dataset_source_input(wildcards):
    source = config["datasets"][wildcards.dataset]["source"]
    if source.get("package"):
        return {"package": package_folder(source["package"])}
    if source.get("files"):
        return {"files": [p.split("!")[0] for p in source["files"].values()]}
    return {}
