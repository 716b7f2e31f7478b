from pathlib import Path

from snakemake.exceptions import WorkflowError

from weightspace.config import (
    ConfigError,
    data_entry,
    dataset_settings,
    finetune_settings,
    load_schema,
    main_datasets,
    model_id,
    seeds_of,
    validate_config,
    zoo_members,
)
from weightspace.centroid import REGIMES, STARTS, centroid_members, centroid_targets
from weightspace.hull import edge_region, hull_groups, set_models, set_size
from weightspace.hull import SETS as HULL_SETS
from weightspace.paths import pair_sets, path_alphas
from weightspace.paths import targets as paths_targets
from weightspace.points import points_memory_mb
from weightspace.provenance import git_state
from weightspace.sources import check_hub_model, package_dirname
from weightspace.weights import parameter_count

try:
    validate_config(
        config,
        load_schema(Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"),
    )
except ConfigError as e:
    raise WorkflowError(f"invalid config: {e}") from None


onstart:
    # Only when jobs are about to run (not in a dry run, which stays offline).
    if config["base_model"].get("hub"):
        try:
            check_hub_model(
                config["base_model"]["hub"],
                config["base_model"].get("revision"),
                Path("resources/base_model"),
            )
        except ConfigError as e:
            raise WorkflowError(f"invalid config: {e}") from None


# Shown in `snakemake --report` (workflow/report/workflow.rst). Added after validation; no
# rule's params read it, so it never triggers a rerun.
config["workflow_provenance"] = git_state(workflow.basedir)


wildcard_constraints:
    dataset="[a-z0-9][a-z0-9_]*",
    seed="[0-9]+",
    package="[a-z0-9][a-z0-9.-]*",
    grouping="[a-z0-9][a-z0-9_]*",
    pairset="same_dataset|same_family|cross_family",
    pair="[0-9]+",
    part="[0-9]+",
    level="dataset|family|general",
    set="in|in_prime|ex",
    regime="full|few_shot",
    start="pretrained|centroid",


MEMBERS = zoo_members(config)

# Packages the experiment reads files from, by folder name under resources/packages/.
PACKAGES = {
    package_dirname(spec): spec
    for spec in [config["base_model"].get("package")]
    + [
        config["datasets"][d]["source"].get("package")
        for d in config["zoo"]["datasets"]
    ]
    if spec
}


def package_folder(spec):
    return f"resources/packages/{package_dirname(spec)}"


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


def dataset_source_input(wildcards):
    source = config["datasets"][wildcards.dataset]["source"]
    if source.get("package"):
        return {"package": package_folder(source["package"])}
    if source.get("files"):
        return {"files": [p.split("!")[0] for p in source["files"].values()]}
    return {}


def model_folders(kind):
    """The per-model folders of one stage ('models' or 'weights'), zoo order."""
    return [f"results/{kind}/{d}/seed{s}" for d, s in MEMBERS]


def summary_inputs(wildcards):
    """The zoo table and every dataset's info.json (majority-class baselines)."""
    return {
        "zoo": rules.zoo.output.table,
        "info": [f"results/data/{d}/info.json" for d in config["zoo"]["datasets"]],
    }


def table1_input(key):
    """Group scores of the grouping geometry.table1 names under `key` (none if no Table 1)."""
    table1 = config["geometry"]["table1"] or {}
    if not table1.get(key):
        return []
    return [f"results/geometry/clusters/{table1[key]}/group_scores.csv"]


def geometry_targets():
    targets = (
        [rules.summary.output.md, rules.calibration.output.csv]
        + ([rules.plot_paths.output.fig3] if PAIRS else [])
        + [f"results/figures/tsne_{g}.png" for g in config["geometry"]["groupings"]]
        + ([rules.plot_hull.output.png] if HULL else [])
        + ([rules.plot_edges.output.png] if EDGES else [])
        + [f"results/tables/bitfit_{r}.csv" for r in BITFIT_REGIMES]
        + [f"results/figures/bitfit_gain_{r}.png" for r in BITFIT_REGIMES]
    )
    if config["geometry"]["table1"]:
        targets.append(rules.table1.output.csv)
    return targets


def gram_part_mem_mb():
    """Memory of a Gram map job: models x chunk_size x (4 + 8) bytes, with headroom."""
    block_mb = len(MEMBERS) * config["flatten"]["chunk_size"] * 12 / 1e6
    return int(1000 + 2 * block_mb)


PAIRS = pair_sets(config)


def path_inputs(wildcards):
    (a, sa), (b, sb) = PAIRS[wildcards.pairset][int(wildcards.pair)]
    data = [
        f"results/data/{d}/{split}.parquet"
        for d in path_targets(wildcards.pairset)
        for split in ("train", "test")
    ]
    return {
        "a": f"results/models/{a}/seed{sa}",
        "b": f"results/models/{b}/seed{sb}",
        "base": "resources/base_model",
        "data": data,
        **regularization_inputs(path_targets(wildcards.pairset)),
    }


def regularization_inputs(targets):
    """The targets' calibration files, whose L2 strengths a loss job uses (loss.choose:
    per_target); none when every point cross-validates its own."""
    if config["loss"]["choose"] != "per_target":
        return {}
    return {"regularization": [f"results/loss/calibration/{t}.json" for t in targets]}


def path_targets(pairset):
    return paths_targets(config, pairset)


def path_tables():
    return [
        f"results/paths/{name}/pair{i}.parquet"
        for name, pairs in PAIRS.items()
        for i in range(len(pairs))
    ]


HULL = hull_groups(config)
EDGES = bool((config.get("hull") or {}).get("edges"))


def data_inputs(datasets):
    return [
        f"results/data/{d}/{split}.parquet"
        for d in datasets
        for split in ("train", "test")
    ]


def hull_set_inputs(wildcards):
    group = HULL[(wildcards.level, wildcards.group)]
    spec = config["hull"]
    key = f"{wildcards.level}/{wildcards.group}"
    models = set_models(group, wildcards.set, key, spec["seed"], spec["max_points"])
    inputs = {
        "models": [f"results/models/{d}/seed{s}" for d, s in models],
        "base": "resources/base_model",
        "data": data_inputs(group["targets"]),
        **regularization_inputs(group["targets"]),
    }
    if wildcards.set == "ex" and group["ex"] is None:
        # random directions rescaled to the mean task-vector norm of In
        inputs["norms"] = rules.gram.output.norms
    return inputs


def points_mem_mb(chunk, loaded=0):
    """The resource function of a job that scores `chunk` points at a time (`loaded`
    checkpoints held in memory): its memory follows from the base model's parameter count
    (weightspace.points.points_memory_mb), times the attempt. The job fits its chunks to what
    it was given."""

    def mem_mb(wildcards, input, attempt):
        return points_memory_mb(parameter_count(input.base), chunk, loaded) * attempt

    return mem_mb


def loss_runtime(evaluations, attempt):
    """Minutes for a job of `evaluations` generalized-loss evaluations: 10 s each (a
    generous bound at the paper preset's scale on one GPU), at least an hour; more per attempt.
    """
    return max(60, -(-evaluations * 10 // 60)) * attempt


def hull_set_runtime(wildcards, attempt):
    group = HULL[(wildcards.level, wildcards.group)]
    size = set_size(group, wildcards.set, config["hull"]["max_points"])
    return loss_runtime(size * len(group["targets"]), attempt)


def edges_runtime(wildcards, attempt):
    edges = config["hull"]["edges"]
    points = 1 + len(edges["distances"]) * (edges["directions"] + 1)
    return loss_runtime(points * len(edge_region(config)["targets"]), attempt)


def hull_tables():
    return [
        f"results/hull/{level}/{group}/{s}.parquet"
        for level, group in HULL
        for s in HULL_SETS
    ]


def edges_inputs(wildcards):
    region = edge_region(config)
    return {
        "models": [f"results/models/{d}/seed{s}" for d, s in region["members"]],
        "base": "resources/base_model",
        "data": data_inputs(region["targets"]),
        "gram": rules.gram.output.gram,
        **regularization_inputs(region["targets"]),
    }


CENTROID = config.get("centroid")
BITFIT_REGIMES = (
    [r for r in REGIMES if r == "full" or CENTROID["few_shot"] is not None]
    if CENTROID
    else []
)


def centroid_inputs(wildcards):
    return {
        "base": "resources/base_model",
        "models": [
            f"results/models/{d}/seed{s}"
            for d, s in centroid_members(config, wildcards.dataset)
        ],
    }


def bitfit_inputs(wildcards):
    start = (
        "resources/base_model"
        if wildcards.start == "pretrained"
        else f"results/centroids/{wildcards.dataset}"
    )
    return {
        "start": start,
        **{
            split: f"results/data/{wildcards.dataset}/{split}.parquet"
            for split in ("train", "dev", "test")
        },
        "info": f"results/data/{wildcards.dataset}/info.json",
    }


def bitfit_settings(dataset):
    """BitFit's hyperparameters: the dataset's finetune settings, then centroid.finetune."""
    return {
        **finetune_settings(config, dataset),
        **CENTROID["finetune"],
        "trainable": "bitfit",
    }


def bitfit_runs(wildcards):
    return [
        f"results/bitfit/{wildcards.regime}/{start}/{d}/seed{s}"
        for d in centroid_targets(config)
        for start in STARTS
        for s in CENTROID["seeds"]
    ]


def summary_extra_inputs(wildcards):
    """Later stages' statistics that results/summary.md reports when they are configured."""
    extra = {"calibration": rules.calibration.output.csv}
    if PAIRS:
        extra["paths"] = "results/paths/path_stats.json"
    if HULL:
        extra["hull"] = "results/tables/probability_of_better.csv"
    if EDGES:
        extra["edges"] = "results/hull/edges.parquet"
    for r in BITFIT_REGIMES:
        extra[f"bitfit_{r}"] = f"results/tables/bitfit_{r}.json"
    return extra
