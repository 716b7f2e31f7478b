"""Which models go where: every "which models, datasets, pairs, groups, members" question of
the experiment, answered from the validated config alone.

The rules' input functions and the jobs both ask this module (the jobs receive their members
through `snakemake.params`/`snakemake.input` and never derive them again); config validation
asks it too. It imports nothing of the workflow and knows no file layout: a member is a
(dataset, seed) pair, and the rules turn members into folders.

- the zoo: `seeds_of`, `members`, `zoo_members`, `main_datasets`, `model_id`, `size_variant`;
- paths (methods.md §5): `PAIRSETS`, `path_alphas`, `pair_sets`, `path_targets`;
- the hull (methods.md §6-7): `general_datasets`, `family_datasets`, `hull_groups`,
  `set_models`, `set_size`, `hull_set`, `edge_region`;
- the centroid (methods.md §8): `region_datasets`, `centroid_targets`, `centroid_members`.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import numpy as np

from .seeding import derive_seed

Member = tuple[str, int]


# --- the zoo ----------------------------------------------------------------------------------


def seeds_of(config: Mapping[str, Any], name: str) -> list[int]:
    """The seeds a dataset is finetuned with: its own `seeds`, else the zoo's."""
    return list(config["datasets"][name].get("seeds", config["zoo"]["seeds"]))


def zoo_members(config: Mapping[str, Any]) -> list[Member]:
    """(dataset, seed) for every model the config asks to finetune, in a stable order."""
    return members(config, config["zoo"]["datasets"])


def main_datasets(config: Mapping[str, Any]) -> list[str]:
    """The zoo's datasets without the size experiment's variants (`<dataset>_n<size>`)."""
    return [d for d in config["zoo"]["datasets"] if not config["datasets"][d].get("size_of")]


def model_id(dataset: str, seed: int) -> str:
    """A zoo model's name in every table: `<dataset>-s<seed>`."""
    return f"{dataset}-s{seed}"


def size_variant(dataset: str, size: int) -> str:
    """The registry name of the size experiment's `size`-example variant of `dataset`."""
    return f"{dataset}_n{size}"


def members(config: Mapping[str, Any], datasets: Sequence[str]) -> list[Member]:
    """The zoo models finetuned on `datasets`: (dataset, seed) for each of their seeds, in order."""
    return [(d, s) for d in datasets for s in seeds_of(config, d)]


# --- paths ------------------------------------------------------------------------------------

PAIRSETS = ("same_dataset", "same_family", "cross_family")


def snapshot_steps(spec: Any, max_steps: int | None) -> list[int]:
    """The finetunes' snapshot steps (finetune.snapshots): a list of steps, or
    {log_spaced: n}: n steps spaced evenly in log between 1 and max_steps (both included;
    rounding can merge neighbours, so fewer when max_steps is small). Sorted, unique."""
    if not spec:
        return []
    if isinstance(spec, Mapping):
        if not max_steps:
            raise ValueError("log-spaced snapshots need finetune.max_steps")
        n = int(spec["log_spaced"])
        return sorted({int(round(max_steps ** (i / (n - 1)))) for i in range(n)})
    return sorted({int(s) for s in spec})


def extrapolation_alphas(steps: int, largest: float) -> list[float]:
    """`steps` log-spaced alphas from 1 to `largest`, mirrored (1 - alpha): 0 ... 1 - largest.
    The endpoints 0 and 1 are left to the interpolation grid."""
    if steps == 0:
        return []
    ext = np.logspace(0.0, np.log10(largest), steps)[1:]
    return sorted([float(a) for a in ext] + [float(1.0 - a) for a in ext])


def path_alphas(spec: Mapping[str, Any]) -> list[float]:
    """The alpha grid of every path: `paths.alphas` and the extrapolation steps."""
    return sorted(set(map(float, spec["alphas"])) | set(extrapolation_alphas(spec["extrapolation_steps"], spec["extrapolation_max"])))


def pair_sets(config: Mapping[str, Any]) -> dict[str, list[tuple[Member, Member]]]:
    """Pair set -> [((dataset, seed), (dataset, seed)), ...] for the configured pair sets."""
    spec = config.get("paths") or {}
    out = {}
    for name in PAIRSETS:
        block = spec.get(name)
        if not block:
            continue
        if name == "same_dataset":
            d = block["dataset"]
            pairs = [((d, a), (d, b)) for a, b in itertools.combinations(seeds_of(config, d), 2)]
        else:
            a, b = block["datasets"]
            pairs = [((a, s), (b, t)) for s, t in itertools.product(seeds_of(config, a), seeds_of(config, b))]
        out[name] = pairs[: block.get("max_pairs") or len(pairs)]
    return out


def path_targets(config: Mapping[str, Any], pairset: str) -> list[str]:
    """Datasets a pair set is scored on: its `targets` (a list of datasets, or a family: that
    family's datasets), or by default the pair's dataset; the datasets of the families the pair
    shares; every main zoo dataset."""
    spec = config["paths"][pairset]
    main = main_datasets(config)
    if isinstance(spec.get("targets"), list):
        return list(spec["targets"])
    if spec.get("targets"):
        return [d for d in main if spec["targets"] in config["datasets"][d]["families"]]
    if pairset == "same_dataset":
        return [spec["dataset"]]
    if pairset == "same_family":
        a, b = spec["datasets"]
        shared = set(config["datasets"][a]["families"]) & set(config["datasets"][b]["families"])
        return [d for d in main if shared & set(config["datasets"][d]["families"])]
    return main


# --- the hull ---------------------------------------------------------------------------------

LEVELS = ("dataset", "family", "general")
SETS = ("in", "in_prime", "ex")


def general_datasets(config: Mapping[str, Any]) -> list[str]:
    """The general group: hull.general, or every main zoo dataset."""
    return list((config.get("hull") or {}).get("general") or main_datasets(config))


def family_datasets(config: Mapping[str, Any], family: str) -> list[str]:
    """The main zoo datasets of one family."""
    return [d for d in main_datasets(config) if family in config["datasets"][d]["families"]]


def _capped(members: list[Any], cap: int | None, key: str, seed: int) -> list[Any]:
    """A seeded subsample of at most `cap` members (dataset, seed), stratified by dataset:
    members are drawn round-robin over the datasets (each dataset's own members in a seeded
    order, the datasets' turn order seeded too), so every dataset is represented whenever
    `cap` is at least the number of datasets. Returned in the members' original order."""
    if cap is None or len(members) <= cap:
        return list(members)
    rng = np.random.default_rng(derive_seed(key, seed, "hull-cap"))
    by_dataset: dict[Any, list[int]] = {}
    for i, m in enumerate(members):
        by_dataset.setdefault(m[0], []).append(i)
    queues = [list(rng.permutation(idx)) for idx in by_dataset.values()]
    turn = list(rng.permutation(len(queues)))
    picked: list[int] = []
    while len(picked) < cap:
        for q in turn:
            if queues[q] and len(picked) < cap:
                picked.append(int(queues[q].pop(0)))
    return [members[i] for i in sorted(picked)]


def hull_groups(config: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(level, group) -> {"in": members, "ex": members (None: random directions), "targets":
    the datasets its loss averages over}, for the levels and groups hull.levels names."""
    spec = config.get("hull") or {}
    levels = spec.get("levels") or {}
    general = general_datasets(config) if spec else []
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for d in (levels.get("dataset") or {}).get("groups", []):
        others = [o for o in general if o != d]
        out[("dataset", d)] = {"in": members(config, [d]), "ex": members(config, others), "targets": [d]}
    family = levels.get("family") or {}
    for f in family.get("groups", []):
        inside = family_datasets(config, f)
        outside = [o for o in main_datasets(config) if o not in inside]
        scored = [d for d in inside if d not in (family.get("exclude") or [])]
        out[("family", f)] = {"in": members(config, inside), "ex": members(config, outside), "targets": scored}
    if levels.get("general") is not None:
        out[("general", "general")] = {"in": members(config, general), "ex": None, "targets": general}
    return out


def set_models(group: Mapping[str, Any], which: str, key: str, seed: int, cap: int | None) -> list[Member]:
    """The zoo models the points of one set combine, in order (none for random directions):
    In (capped: a seeded stratified subsample), In′ (every In model: each point combines them
    all), Ex (capped)."""
    members = [tuple(m) for m in group["in"]]
    if which == "in":
        return _capped(members, cap, key + "/in", seed)
    if which == "in_prime":
        return members
    if which != "ex":
        raise ValueError(f"unknown set {which!r}; sets are {SETS}")
    return [] if group["ex"] is None else _capped([tuple(m) for m in group["ex"]], cap, key + "/ex", seed)


def set_size(group: Mapping[str, Any], which: str, cap: int | None) -> int:
    """How many points a set holds (for sizing its job)."""
    n = len(group["in"]) if which in ("in", "in_prime") or group["ex"] is None else len(group["ex"])
    return min(n, cap or n)


def set_pieces(count: int, targets: int, max_evaluations: int | None) -> int:
    """Jobs a hull set is scored in: as few as keep each at most `max_evaluations` (point,
    target) evaluations (None: one)."""
    if max_evaluations is None or count * targets <= max_evaluations:
        return 1
    per_piece = max(1, max_evaluations // max(targets, 1))
    return -(-count // per_piece)


def piece_points(count: int, pieces: int, piece: int) -> tuple[int, int]:
    """The points [lo, hi) of piece `piece` of `pieces` (contiguous, sizes differing by at most one)."""
    if not 0 <= piece < pieces:
        raise ValueError(f"piece {piece} of {pieces}")
    base, extra = divmod(count, pieces)
    lo = piece * base + min(piece, extra)
    return lo, lo + base + (piece < extra)


def hull_set(group: Mapping[str, Any], which: str, key: str, seed: int, cap: int | None) -> dict[str, Any]:
    """What one hull_set job scores: the set's `members` (set_models, in order), its number of
    points `count` (set_size), whether its points are `random` directions (the general level's
    Ex), the group's `in` members (their task-vector norms size those directions) and its
    `targets`."""
    return {
        "key": key,
        "members": set_models(group, which, key, seed, cap),
        "count": set_size(group, which, cap),
        "random": which == "ex" and group["ex"] is None,
        "in": [tuple(m) for m in group["in"]],
        "targets": list(group["targets"]),
    }


def edge_region(config: Mapping[str, Any]) -> dict[str, Any]:
    """The region hull.edges names: its models and the datasets scored (a family's exclusions
    at the family level apply)."""
    region = config["hull"]["edges"]["region"]
    if region == "general":
        datasets = general_datasets(config)
        scored = datasets
    else:
        datasets = family_datasets(config, region)
        exclude = ((config["hull"]["levels"].get("family") or {}).get("exclude")) or []
        scored = [d for d in datasets if d not in exclude]
    return {"region": region, "members": members(config, datasets), "targets": scored}


# --- the centroid -----------------------------------------------------------------------------

STARTS = ("pretrained", "centroid")
REGIMES = ("full", "few_shot")


def region_datasets(config: Mapping[str, Any], region: str) -> list[str]:
    """`general` (the general group) or a family's main zoo datasets."""
    return general_datasets(config) if region == "general" else family_datasets(config, region)


def centroid_targets(config: Mapping[str, Any]) -> list[str]:
    """The datasets a centroid is built for (each BitFit target)."""
    spec = config["centroid"]
    return list(spec.get("targets") or region_datasets(config, spec["region"]))


def centroid_members(config: Mapping[str, Any], target: str) -> list[Member]:
    """The region's models that the centroid for `target` averages: every one not finetuned on
    `target` (nor on a training-size variant of it)."""

    def base(d: str) -> str:
        return config["datasets"][d].get("size_of") or d

    return [(d, s) for d in region_datasets(config, config["centroid"]["region"]) if base(d) != target for s in seeds_of(config, d)]
