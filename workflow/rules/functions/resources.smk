# Input functions and settings of the rules in workflow/rules/resources.smk (kept apart from the
# rules, as Snakemake's linter asks).


def base_model_input(wildcards):
    base = config["base_model"]
    if base.get("package"):
        return {"package": package_folder(base["package"])}
    if base.get("local"):
        # Every file of the folder, so that a changed local model reruns what depends on it.
        return {
            "files": sorted(
                str(p) for p in Path(base["local"]).iterdir() if p.is_file()
            )
        }
    return {}
