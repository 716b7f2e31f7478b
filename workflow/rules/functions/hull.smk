# Input functions and settings of the rules in workflow/rules/hull.smk (kept apart from the
# rules, as Snakemake's linter asks).


HULL = plan.hull_groups(config)


EDGES = bool((config.get("hull") or {}).get("edges"))


def hull_set_job(wildcards):
    """What one hull_set job scores (weightspace.plan.hull_set): its members, point count,
    whether its points are random directions, In's members and the targets."""
    spec = config["hull"]
    return plan.hull_set(
        HULL[(wildcards.level, wildcards.group)],
        wildcards.set,
        f"{wildcards.level}/{wildcards.group}",
        spec["seed"],
        spec["max_points"],
    )


def hull_set_inputs(wildcards):
    job = hull_set_job(wildcards)
    inputs = {
        "models": model_folders("models", job["members"]),
        "base": "resources/base_model",
        "data": data_inputs(job["targets"]),
        **regularization_inputs(job["targets"]),
    }
    if job["random"]:
        # random directions rescaled to the mean task-vector norm of In
        inputs["norms"] = rules.gram.output.norms
    return inputs


def hull_set_piece_count(wildcards):
    """The jobs one set is scored in (hull.max_evaluations)."""
    job = hull_set_job(wildcards)
    return plan.set_pieces(
        job["count"], len(job["targets"]), config["hull"]["max_evaluations"]
    )


def hull_piece_points(wildcards):
    """The points [lo, hi) of the set that one hull_set job scores."""
    job = hull_set_job(wildcards)
    return plan.piece_points(
        job["count"], hull_set_piece_count(wildcards), int(wildcards.piece)
    )


def hull_set_pieces(wildcards):
    return [
        f"results/hull/{wildcards.level}/{wildcards.group}/{wildcards.set}/piece{k}.parquet"
        for k in range(hull_set_piece_count(wildcards))
    ]


def hull_set_runtime(wildcards, attempt):
    job = hull_set_job(wildcards)
    lo, hi = hull_piece_points(wildcards)
    return loss_runtime((hi - lo) * len(job["targets"]), attempt)


def edges_runtime(wildcards, attempt):
    edges = config["hull"]["edges"]
    points = 1 + len(edges["distances"]) * (edges["directions"] + 1)
    return loss_runtime(points * len(plan.edge_region(config)["targets"]), attempt)


def hull_tables():
    return [
        f"results/hull/{level}/{group}/{s}.parquet"
        for level, group in HULL
        for s in plan.SETS
    ]


def edges_inputs(wildcards):
    region = plan.edge_region(config)
    return {
        "models": model_folders("models", region["members"]),
        "base": "resources/base_model",
        "data": data_inputs(region["targets"]),
        "gram": rules.gram.output.gram,
        **regularization_inputs(region["targets"]),
    }
