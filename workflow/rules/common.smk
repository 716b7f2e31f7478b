import os
from pathlib import Path

from snakemake.exceptions import WorkflowError

from weightspace.config import (
    ConfigError,
    data_entry,
    dataset_settings,
    finetune_settings,
    layered_config,
    load_schema,
    validate_config,
)
from weightspace import plan
from weightspace.plan import main_datasets, model_id, seeds_of, zoo_members
from weightspace.sizing import configured_chunk, parameter_count, points_memory_mb
from weightspace.provenance import git_state
from weightspace.sources import check_hub_model, package_dirname

try:
    # Every config file again, read strictly (a key given twice, named with its file and line)
    # and layered so that a one-of-several-kinds mapping (base_model, a dataset's definition)
    # is replaced whole, never mixed (weightspace.config.layered_config); --config on top.
    _layered = layered_config(
        workflow.config_settings.configfiles or workflow.configfiles,
        workflow.config_settings.config,
    )
    config.clear()
    config.update(_layered)
    validate_config(
        config,
        load_schema(Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"),
    )
except ConfigError as e:
    raise WorkflowError(f"invalid config: {e}") from None


def unreplaced_placeholders(settings, partition_file=None):
    """Profile resources, and partitions of the SLURM partition file, still holding a
    REPLACE_WITH_... placeholder, as the keys to edit (a resource's `raw` is the value as the
    profile wrote it)."""

    def unset(value):
        return "REPLACE_WITH_" in str(getattr(value, "raw", value))

    found = [
        f"default-resources: {key}"
        for key, value in (settings.default_resources or {}).items()
        if unset(value)
    ]
    for rule, resources in (settings.overwrite_resources or {}).items():
        found += [
            f"set-resources: {rule}: {key}"
            for key, value in resources.items()
            if unset(value)
        ]
    if partition_file is not None:
        import yaml

        partitions = (yaml.safe_load(Path(partition_file).read_text()) or {}).get(
            "partitions"
        ) or {}
        found += [
            f"the partition name {name} in {partition_file}"
            for name in partitions
            if unset(name)
        ]
    return found


def partition_file(executor_settings):
    """The SLURM plugin's partition file (its --slurm-partition-config, or the
    SNAKEMAKE_SLURM_PARTITIONS variable), None under other executors."""
    if not hasattr(executor_settings, "partition_config"):
        return None
    return (
        executor_settings.partition_config
        or os.environ.get("SNAKEMAKE_SLURM_PARTITIONS")
        or None
    )


onstart:
    # Before any job (a download included) runs: a profile placeholder left in place would
    # only fail at the first sbatch, after the downloads.
    placeholders = unreplaced_placeholders(
        workflow.resource_settings, partition_file(workflow.executor_settings)
    )
    if placeholders:
        raise WorkflowError(
            "the profile still has placeholders: edit "
            + "; ".join(placeholders)
            + " (your account and partitions; profiles/slurm)"
        )
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
    piece="[0-9]+",
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


def model_folder(member, kind="models"):
    """A zoo member's (dataset, seed) folder of one stage ('models' or 'weights'): the one
    place the workflow names it."""
    dataset, seed = member
    return f"results/{kind}/{dataset}/seed{seed}"


def model_folders(kind, members=None):
    """The per-model folders of one stage ('models' or 'weights'), zoo order by default."""
    return [model_folder(m, kind) for m in (MEMBERS if members is None else members)]


def regularization_inputs(targets):
    """The targets' calibration files, whose L2 strengths a loss job uses (loss.choose:
    per_target); none when every point cross-validates its own."""
    if config["loss"]["choose"] != "per_target":
        return {}
    return {"regularization": [f"results/loss/calibration/{t}.json" for t in targets]}


def data_inputs(datasets, splits=None):
    """The split files a loss job reads: the split its head is fitted on (loss.probe_on) and
    test, or the named `splits`."""
    splits = splits or (config["loss"]["probe_on"], "test")
    return [f"results/data/{d}/{split}.parquet" for d in datasets for split in splits]


def points_mem_mb(rule, chunk, loaded=0):
    """The resource function of a job of `rule` that scores `chunk` points at a time
    (`loaded` checkpoints held in memory): its host memory follows from the base model's
    parameter count (weightspace.points.points_memory_mb), times the attempt. A job on a GPU
    (`gpu_rules`) keeps its points' float64 accumulators there, so its host memory holds none
    of them. The job fits its chunks to what it was given."""
    on_host = 0 if gpus(rule) else chunk

    def mem_mb(wildcards, input, attempt):
        return points_memory_mb(parameter_count(input.base), on_host, loaded) * attempt

    return mem_mb


def gpus(rule):
    """The GPUs a job of `rule` asks for (1 when the config's `gpu_rules` lists it, else 0):
    the experiment says which of its model passes need a GPU. The SLURM profile routes by this
    request alone (profiles/slurm/partitions.yaml): a job asking for a GPU goes to the GPU
    partition, every other one to the CPU partition."""
    return int(rule in config["gpu_rules"])


def loss_runtime(evaluations, attempt):
    """Minutes for a job of `evaluations` generalized-loss evaluations: 10 s each (a
    generous bound at the paper preset's scale on one GPU), at least an hour; more per attempt.
    """
    return max(60, -(-evaluations * 10 // 60)) * attempt
