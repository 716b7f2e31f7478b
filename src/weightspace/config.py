"""Validation of the workflow's config, and the per-dataset views the rules use.

The JSON schema (workflow/schemas/config.schema.yaml) checks types and ranges; the checks
here are the ones a schema cannot express (cross references, exactly-one-of choices). Every
error names the key as a dotted path and says what to do.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Mapping

import jsonschema
import yaml

from .plan import centroid_members, centroid_targets, main_datasets, seeds_of, size_variant, snapshot_steps

DATASET_OVERRIDES = ("test_fraction", "dev_fraction", "max_train", "max_dev", "max_test", "probe_fraction", "max_probe", "min_probe")


class ConfigError(ValueError):
    """A config mistake, with the offending key as a dotted path."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"config key '{key}': {problem}")


def _dotted(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        node: Any = root
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def fill_defaults(instance: dict, schema: Mapping[str, Any], root: Mapping[str, Any]) -> None:
    """Set the schema's `default:` values for missing keys, in place.

    Follows `properties` only, not `additionalProperties`: a dataset's optional `finetune`
    block is an override, and filling it with defaults would mask the global values. A block
    marked `x-override: true` (centroid.finetune) is left as written for the same reason.
    """
    schema = _resolve(schema, root)
    if schema.get("x-override"):
        return  # an override block: what it leaves out comes from elsewhere, not from defaults
    for key, sub in schema.get("properties", {}).items():
        sub = _resolve(sub, root)
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict):
            fill_defaults(instance[key], sub, root)


def _message(error: jsonschema.ValidationError) -> ConfigError:
    key = _dotted(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        if allowed:
            return ConfigError(
                _dotted([*error.absolute_path, extra[0]]),
                f"unknown key; allowed here: {', '.join(allowed)}",
            )
    if "propertyNames" in error.schema_path:
        return ConfigError(f"{key}.{error.instance}", "a name here must be lower-case letters, digits and underscores (it becomes a folder name)")
    if error.validator == "pattern":
        hint = error.schema.get("description", f"must match {error.validator_value}")
        return ConfigError(key, f"{error.instance!r} is malformed: {hint}")
    if error.validator == "required":
        return ConfigError(key, error.message.replace("property", "key"))
    if error.validator == "oneOf" and error.schema.get("description"):
        return ConfigError(key, f"{error.instance!r} is not allowed here: {' '.join(error.schema['description'].split())}")
    return ConfigError(key, error.message)


def load_schema(path: str | Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def validate_config(config: dict, schema: Mapping[str, Any]) -> dict:
    """Check `config` against `schema` and the cross-reference rules; fill defaults in place.

    Raises ConfigError naming the first offending key (the shallowest one, so a missing
    block is reported before the keys inside it).
    """
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise _message(errors[0])
    fill_defaults(config, schema, schema)
    _check_references(config)
    return config


def _exactly_one(block: Mapping[str, Any], keys: tuple[str, ...], where: str) -> str:
    present = [k for k in keys if block.get(k) is not None]
    if len(present) != 1:
        raise ConfigError(where, f"give exactly one of {', '.join(keys)} (found: {', '.join(present) or 'none'})")
    return present[0]


def _check_references(config: dict) -> None:
    base = config["base_model"]
    kind = _exactly_one(base, ("package", "hub", "local"), "base_model")
    if kind == "package" and not base.get("path"):
        raise ConfigError("base_model.path", "a package base model needs the folder inside the package that holds the model")
    if kind == "local":
        folder = Path(base["local"])
        if not (folder / "config.json").is_file():
            raise ConfigError(
                "base_model.local",
                f"{folder} has no config.json; point it at a folder written by save_pretrained, "
                "or use `hub:` for a model hub name (downloaded by the base_model rule)",
            )

    registry = config["datasets"]
    for name, entry in registry.items():
        where = f"datasets.{name}"
        source = entry["source"]
        if source.get("package") and source.get("hub"):
            raise ConfigError(f"{where}.source", "give either `package` or `hub`, not both")
        kind = "package" if source.get("package") else "hub" if source.get("hub") else "files"
        if kind == "files" and not source.get("files"):
            raise ConfigError(f"{where}.source", "give `package` + `files`, `hub` + `splits`, or local `files`")
        if kind == "package" and not source.get("files"):
            raise ConfigError(f"{where}.source.files", "name the file(s) inside the package")
        if kind == "hub":
            if source.get("files"):
                raise ConfigError(f"{where}.source.files", "a hub source takes `splits`, not `files`")
            if not source.get("splits"):
                raise ConfigError(f"{where}.source.splits", "name the hub splits, e.g. {train: train, test: validation}")
        if kind != "hub" and not source.get("format"):
            raise ConfigError(f"{where}.source.format", "say how to read the files: csv, tsv, jsonl or text_folders")
        parts = source.get("splits") or source.get("files")
        if "all" in parts and len(parts) > 1:
            raise ConfigError(f"{where}.source", "give either `all` or `train` (+ `test`), not both")
        if "all" not in parts and "train" not in parts:
            raise ConfigError(f"{where}.source", "a train split (or `all`) is required")
        derived_from = entry.get("derived_from")
        if derived_from is not None and derived_from not in registry:
            raise ConfigError(f"{where}.derived_from", f"{derived_from!r} is not a dataset of the registry")
        if entry.get("label_map"):
            unknown = sorted({str(v) for v in entry["label_map"].values()} - {str(x) for x in entry.get("labels", [])})
            if not entry.get("labels"):
                raise ConfigError(f"{where}.labels", "declare the label set when a label_map is given")
            if unknown:
                raise ConfigError(f"{where}.label_map", f"maps to labels not declared in `labels`: {', '.join(unknown)}")

    selected = config["zoo"].setdefault("datasets", sorted(registry))
    _expand_size_experiment(config)
    for i, name in enumerate(selected):
        if name not in registry:
            raise ConfigError(f"zoo.datasets.{i}", f"{name!r} is not in the dataset registry (`datasets:`); known: {', '.join(sorted(registry))}")

    _check_snapshots(config)
    _check_geometry(config)
    _check_paths(config)
    _check_hull(config)
    _check_centroid(config)

    flatten = config["flatten"]
    if flatten["shard_size"] % flatten["chunk_size"]:
        raise ConfigError("flatten.shard_size", f"must be a multiple of flatten.chunk_size ({flatten['chunk_size']})")


NOT_DATA_KEYS = ("description", "families", "derived_from", "seeds", "finetune", "train_size")


def data_entry(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The part of a registry entry that decides the prepared data (so that changing, say, a
    dataset's finetuning overrides does not redo its splits)."""
    return {k: v for k, v in config["datasets"][name].items() if k not in NOT_DATA_KEYS}


def dataset_settings(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The split/cap settings of one dataset: the global `data` block with its overrides."""
    entry = config["datasets"][name]
    return {**config["data"], **{k: entry[k] for k in DATASET_OVERRIDES if k in entry}}


def finetune_settings(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The finetuning hyperparameters of one dataset: global `finetune` with its overrides."""
    return {**config["finetune"], **config["datasets"][name].get("finetune", {})}


def _expand_size_experiment(config: dict) -> None:
    """Add a registry entry per (dataset, size) of the size experiment and put it in the zoo."""
    block = config.get("size_experiment")
    if not block:
        return
    registry = config["datasets"]
    for i, name in enumerate(block["datasets"]):
        if name not in registry:
            raise ConfigError(f"size_experiment.datasets.{i}", f"{name!r} is not in the dataset registry")
    for name in block["datasets"]:
        for size in block["sizes"]:
            variant = size_variant(name, size)
            if variant in registry:
                raise ConfigError(f"datasets.{variant}", "this name is taken by the size experiment; rename the dataset")
            entry = copy.deepcopy(registry[name])
            entry.update(max_train=size, seeds=list(block.get("seeds", [0])), size_of=name, train_size=size)
            registry[variant] = entry
            config["zoo"]["datasets"].append(variant)


def _check_geometry(config: dict) -> None:
    geometry = config["geometry"]
    families = {f for d in config["zoo"]["datasets"] for f in config["datasets"][d]["families"]}
    for name, spec in geometry["groupings"].items():
        where = f"geometry.groupings.{name}"
        if spec["by"] == "family":
            if not spec.get("groups"):
                raise ConfigError(f"{where}.groups", "a family grouping lists its groups (families, a domain group first)")
            unknown = [g for g in spec["groups"] if g not in families]
            if unknown:
                raise ConfigError(f"{where}.groups", f"no finetuned dataset belongs to {unknown}; families in the zoo: {sorted(families)}")
        elif spec.get("groups"):
            raise ConfigError(f"{where}.groups", f"only a family grouping takes groups (this one is by {spec['by']})")
        if spec["by"] == "size" and spec.get("models", "zoo") != "size":
            raise ConfigError(f"{where}.models", "a size grouping clusters the size experiment's models: set models: size")
        if spec.get("models") == "size" and not config.get("size_experiment"):
            raise ConfigError(f"{where}.models", "clusters the size experiment's models, but size_experiment is not configured")
    table1 = geometry.get("table1")
    if table1:
        for key in ("with_domain", "without_domain"):
            ref = table1.get(key)
            if ref is None:
                raise ConfigError(f"geometry.table1.{key}", "name a family grouping")
            if geometry["groupings"].get(ref, {}).get("by") != "family":
                raise ConfigError(f"geometry.table1.{key}", f"{ref!r} is not a family grouping of geometry.groupings")


def _check_paths(config: dict) -> None:
    spec = config.get("paths")
    if not spec:
        return
    zoo = set(config["zoo"]["datasets"])
    families = {d: set(config["datasets"][d]["families"]) for d in zoo}
    if not any(spec.get(k) for k in ("same_dataset", "same_family", "cross_family")):
        raise ConfigError("paths", "name at least one pair set: same_dataset, same_family or cross_family")
    if spec.get("same_dataset"):
        d = spec["same_dataset"]["dataset"]
        if d not in zoo:
            raise ConfigError("paths.same_dataset.dataset", f"{d!r} is not finetuned (zoo.datasets)")
        if len(seeds_of(config, d)) < 2:
            raise ConfigError("paths.same_dataset.dataset", f"{d!r} has fewer than two seeds: no pairs")
    all_families = set().union(*families.values())
    for key in ("same_dataset", "same_family", "cross_family"):
        block = spec.get(key) or {}
        for i, d in enumerate(block.get("datasets", [])):
            if d not in zoo:
                raise ConfigError(f"paths.{key}.datasets.{i}", f"{d!r} is not finetuned (zoo.datasets)")
        targets = block.get("targets")
        if isinstance(targets, list):
            main = set(main_datasets(config))
            for i, d in enumerate(targets):
                if d not in main:
                    raise ConfigError(f"paths.{key}.targets.{i}", f"{d!r} is not a finetuned dataset (zoo.datasets)")
        elif targets is not None and targets not in all_families:
            raise ConfigError(f"paths.{key}.targets", f"no finetuned dataset belongs to {targets!r}; families: {sorted(all_families)}")
        if key == "same_family" and block:
            a, b = block["datasets"]
            if not families[a] & families[b] and block.get("targets") is None:
                raise ConfigError(f"paths.{key}.datasets", f"{a} and {b} share no family (a same-family pair needs one)")


def _check_hull(config: dict) -> None:
    spec = config.get("hull")
    if not spec:
        return
    main = main_datasets(config)
    general = spec.get("general") or main
    for i, d in enumerate(spec.get("general") or []):
        if d not in main:
            raise ConfigError(f"hull.general.{i}", f"{d!r} is not a finetuned dataset (zoo.datasets)")
    levels = spec["levels"]
    if not any(levels.get(k) is not None for k in ("dataset", "family", "general")):
        raise ConfigError("hull.levels", "name at least one level: dataset, family or general ({} for general)")
    for i, d in enumerate((levels.get("dataset") or {}).get("groups", [])):
        if d not in general:
            raise ConfigError(f"hull.levels.dataset.groups.{i}", f"{d!r} is not in the general group {general}")
        if len(seeds_of(config, d)) < 2:
            raise ConfigError(f"hull.levels.dataset.groups.{i}", f"{d!r} has one seed: In' needs at least two models")
    if levels.get("dataset") and len(general) < 2:
        raise ConfigError("hull.general", "the dataset level's Ex are the general group's other datasets: name at least two")
    family = levels.get("family") or {}
    families = {f: [d for d in main if f in config["datasets"][d]["families"]] for d in main for f in config["datasets"][d]["families"]}
    for i, f in enumerate(family.get("groups", [])):
        where = f"hull.levels.family.groups.{i}"
        if f not in families:
            raise ConfigError(where, f"no finetuned dataset belongs to {f!r}; families: {sorted(families)}")
        if not [d for d in families[f] if d not in family["exclude"]]:
            raise ConfigError(where, f"every dataset of {f!r} is excluded: nothing to score")
        if set(families[f]) == set(main):
            raise ConfigError(where, f"every finetuned dataset belongs to {f!r}: no models outside it for Ex")
    for i, d in enumerate(family.get("exclude", [])):
        if d not in main:
            raise ConfigError(f"hull.levels.family.exclude.{i}", f"{d!r} is not a finetuned dataset (zoo.datasets)")
    edges = spec.get("edges")
    if edges:
        region = edges["region"]
        if region != "general" and region not in families:
            raise ConfigError("hull.edges.region", f"name general or a family of the zoo {sorted(families)}, not {region!r}")
        datasets = general if region == "general" else families[region]
        if sum(len(seeds_of(config, d)) for d in datasets) < 2:
            raise ConfigError("hull.edges.region", f"{region!r} has fewer than two models: no centroid distance")


def _check_snapshots(config: dict) -> None:
    """finetune.snapshots resolved to its list of steps (empty: none), in the global block only:
    every model of the formation analysis is snapshotted at the same steps."""
    for name, entry in config["datasets"].items():
        if "snapshots" in entry.get("finetune", {}):
            raise ConfigError(f"datasets.{name}.finetune.snapshots", "snapshots are set once for every model, in the global finetune block")
    if "snapshots" in (config.get("centroid") or {}).get("finetune", {}):
        raise ConfigError("centroid.finetune.snapshots", "BitFit runs keep no snapshots; set them in the global finetune block")
    ft = config["finetune"]
    try:
        steps = snapshot_steps(ft.get("snapshots"), ft.get("max_steps"))
    except ValueError as e:
        raise ConfigError("finetune.snapshots", str(e)) from None
    if ft.get("max_steps") and steps and steps[-1] > ft["max_steps"]:
        raise ConfigError("finetune.snapshots", f"step {steps[-1]} is past finetune.max_steps ({ft['max_steps']})")
    for name in config["zoo"]["datasets"]:  # a dataset's own max_steps may not stop before the last snapshot either
        own = (config["datasets"][name].get("finetune") or {}).get("max_steps")
        if own and steps and steps[-1] > own:
            raise ConfigError(f"datasets.{name}.finetune.max_steps", f"{own} stops before the last snapshot, step {steps[-1]} (finetune.snapshots)")
    # absent when there are none: a config without snapshots plans exactly as before
    ft.pop("snapshots", None)
    if steps:
        ft["snapshots"] = steps


def _check_centroid(config: dict) -> None:
    spec = config.get("centroid")
    if not spec:
        return
    main = main_datasets(config)
    families = {f for d in main for f in config["datasets"][d]["families"]}
    region = spec["region"]
    if region != "general" and region not in families:
        raise ConfigError("centroid.region", f"name general or a family of the zoo {sorted(families)}, not {region!r}")
    for i, d in enumerate(spec.get("targets") or []):
        if d not in main:
            raise ConfigError(f"centroid.targets.{i}", f"{d!r} is not a finetuned dataset (zoo.datasets)")
    for d in centroid_targets(config):
        if not centroid_members(config, d):
            raise ConfigError("centroid.region", f"the centroid for {d!r} would average no model: the region has only {d!r}'s models")


# --- config files, read strictly and layered ----------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML itself keeps the last
    silently: `lr` twice trained every model at the second value)."""


def _no_duplicate_keys(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(str(key), f"given twice in one mapping in {loader.name}, lines {seen[key]} and {line}; YAML would silently keep the last")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


def read_config_file(path: str | Path) -> dict:
    """One config file, read strictly: a duplicate key or a syntax error names the file and the line."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        loader = _StrictLoader(f)
        loader.name = str(path)
        try:
            data = loader.get_single_data()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
            raise ConfigError("<file>", f"{path} is not valid YAML at {where}: {e.problem or e.context}") from None
        finally:
            loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError("<top level>", f"{path} must hold a mapping of config keys")
    return data


def _merged(base: Any, over: Any) -> Any:
    """Snakemake's merge of config files: mappings key by key, anything else replaced."""
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merged(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(over)


def layered_config(files: Iterable[str | Path], overrides: Mapping[str, Any] | None = None) -> dict:
    """The config of `--configfile A B ...` (later files over earlier ones) and `--config`
    `overrides`, merged as Snakemake merges them with one difference: a mapping that is one of
    several kinds is replaced whole, never mixed. `base_model` (package, hub or local) is taken
    whole from the last file that gives it, and a dataset entry that gives a `source` is a new
    definition that replaces the earlier one whole (an entry without `source` overrides keys of
    the earlier one). So `--configfile config.yaml presets/paper.yaml` plans exactly as
    `--configfile presets/paper.yaml`, and `--configfile config.yaml mine.yaml` with one key in
    mine.yaml changes only that key."""
    config: dict = {}
    for path in files:
        layer = read_config_file(path)
        registry = dict(config.get("datasets") or {})
        for name, entry in (layer.get("datasets") or {}).items():
            if name in registry and isinstance(entry, Mapping) and "source" in entry:
                registry.pop(name)  # a new definition: nothing of the earlier one stays
        merged = _merged(config, {k: v for k, v in layer.items() if k != "base_model"})
        if "datasets" in layer:
            merged["datasets"] = _merged(registry, layer.get("datasets") or {})
        if "base_model" in layer:
            merged["base_model"] = copy.deepcopy(layer["base_model"])
        config = merged
    return _merged(config, dict(overrides or {}))
