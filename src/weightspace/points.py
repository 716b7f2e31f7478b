"""A point of weight space is data, not code (methods.md §4-7).

theta = c_pre * theta_pretrained + sum_i c_i * theta_i + direction, over body weights, where
the theta_i are zoo checkpoints and `direction` is an optional random direction drawn tensor by
tensor like a Xavier initialisation and rescaled to a given total norm. Interpolation is
{A: 1 - alpha, B: alpha}; extrapolation the same with alpha outside [0, 1]; a hull point a
Dirichlet-weighted combination; the centroid equal weights. A point is materialised from the
memory-mapped safetensors checkpoints only when evaluated, and never written unless asked.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

# The sizes (memory per point, the configured chunk) live in the torch-free `sizing`, which
# the Snakefile imports; re-exported here for the loss stages.
from .sizing import (  # noqa: E402,F401
    DEFAULT_CHUNK,
    FIXED_BYTES_PER_PARAMETER,
    HEADROOM,
    LOADED_BYTES_PER_PARAMETER,
    OVERHEAD_MB,
    POINT_BYTES_PER_PARAMETER,
    configured_chunk,
    points_memory_mb,
)


def points_chunk(body_parameters: int, limit: int, memory_mb: float | None = None, device: torch.device | str | None = None, loaded: int = 0) -> int:
    """Points materialised at once: `limit` (the config's hull.chunk), fewer when their float64
    accumulators would not fit: on a GPU in 80% of its free memory, on the CPU in the job's
    memory `memory_mb` less the fixed cost (points_memory_mb); no limit from memory when
    `memory_mb` is None. At least 1. Each checkpoint is read once per chunk."""
    fit = limit
    per_point = POINT_BYTES_PER_PARAMETER * body_parameters
    if device is not None and torch.device(device).type == "cuda":
        fit = int(0.8 * torch.cuda.mem_get_info(torch.device(device))[0] // per_point)
    elif memory_mb is not None:
        fixed = (FIXED_BYTES_PER_PARAMETER + LOADED_BYTES_PER_PARAMETER * loaded) * body_parameters
        fit = int(((memory_mb - OVERHEAD_MB) * 2**20 / HEADROOM - fixed) // per_point)
    return max(1, min(limit, fit))


@dataclass(frozen=True)
class RandomDirection:
    """A seeded random direction: each tensor drawn uniformly in +-sqrt(6 / (fan_in + fan_out))
    (Xavier/Glorot; vectors use their length for both fans), the whole rescaled to `norm`."""

    seed: int
    norm: float
    distribution: str = "xavier_uniform"

    def draw(self, shapes: Mapping[str, Sequence[int]]) -> dict[str, torch.Tensor]:
        if self.distribution != "xavier_uniform":
            raise ValueError(f"unknown direction distribution {self.distribution!r}")
        g = torch.Generator().manual_seed(self.seed)
        out = {}
        for name, shape in shapes.items():
            fan_out = shape[0] if len(shape) >= 1 else 1
            fan_in = int(math.prod(shape[1:])) if len(shape) >= 2 else fan_out
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            out[name] = (torch.rand(tuple(shape), generator=g, dtype=torch.float64) * 2 - 1) * bound
        total = math.sqrt(sum(float((t * t).sum()) for t in out.values()))
        return {k: v * (self.norm / total) for k, v in out.items()}


@dataclass(frozen=True)
class Point:
    """coefficients: zoo checkpoint folder -> coefficient; pretrained: the pretrained body's."""

    coefficients: tuple[tuple[str, float], ...] = ()
    pretrained: float = 0.0
    direction: RandomDirection | None = None
    label: str = field(default="", compare=False)

    @classmethod
    def interpolation(cls, a: str, b: str, alpha: float) -> "Point":
        """(1 - alpha) * theta_a + alpha * theta_b."""
        return cls(((str(a), 1.0 - alpha), (str(b), alpha)), label=f"alpha={alpha:g}")

    @classmethod
    def combination(cls, models: Sequence[str], weights: Sequence[float], label: str = "") -> "Point":
        return cls(tuple((str(m), float(w)) for m, w in zip(models, weights)), label=label)

    def to_json(self) -> dict[str, Any]:
        return {
            "coefficients": [[m, c] for m, c in self.coefficients],
            "pretrained": self.pretrained,
            "direction": None if self.direction is None else vars(self.direction),
            "label": self.label,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Point":
        d = data.get("direction")
        return cls(
            tuple((m, float(c)) for m, c in data["coefficients"]),
            float(data.get("pretrained", 0.0)),
            RandomDirection(**d) if d else None,
            data.get("label", ""),
        )

    def __str__(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)


def accumulate(
    points: Sequence[Point],
    pretrained: Mapping[str, torch.Tensor],
    prefix: str,
    loaded: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    buffers: Sequence[dict[str, torch.Tensor]] | None = None,
    device: torch.device | str | None = None,
) -> list[dict[str, torch.Tensor]]:
    """The points' body tensors in float64, names as in `pretrained` (the pretrained body),
    written into `buffers` (one float64 body per point, reused across calls) when given, else
    allocated on `device` (default: the CPU); the arithmetic runs where the buffers are (a GPU:
    the same sums, in float64 there too).

    Every checkpoint the points combine is read once for all of them (memory-mapped
    model.safetensors), or taken from `loaded` (folder -> body, from weights.checkpoint_body)
    when there, and converted to float64 once. Terms are accumulated checkpoint by checkpoint in
    order of first appearance, each formed as `coef * tensor` and then added (two roundings), so
    a point's weights do not depend on which other points share the call. Memory: one float64
    body per point plus one checkpoint and one scratch tensor.
    """
    from .weights import checkpoint_body

    names = list(pretrained)
    if buffers is None:
        buffers = [{n: torch.empty(t.shape, dtype=torch.float64, device=device) for n, t in pretrained.items()} for _ in points]
    accs = list(buffers[: len(points)])
    where = next(iter(accs[0].values())).device if accs and accs[0] else torch.device("cpu")
    # whether a point's accumulator holds a term yet: the first term is written, not added, so
    # a point without a pretrained term needs no zeroing pass (0 + x == x exactly)
    started = [p.pretrained != 0.0 for p in points]
    if any(started):
        for n, t in pretrained.items():
            t64 = t.to(where).to(torch.float64)  # moved as float32, widened on the device (exact)
            for p, acc, go in zip(points, accs, started):
                if go:
                    torch.mul(t64, p.pretrained, out=acc[n])
    scratch = torch.empty(max(t.numel() for t in pretrained.values()), dtype=torch.float64, device=where)
    folders = list(dict.fromkeys(f for p in points for f, _ in p.coefficients))
    for folder in folders:
        body = loaded[folder] if loaded is not None and folder in loaded else checkpoint_body(folder, names, prefix)
        users = []  # (point, coefficient, whether the term is added to earlier ones)
        for i, p in enumerate(points):
            for f, coef in p.coefficients:
                if f == folder:
                    users.append((i, coef, started[i]))
                    started[i] = True
        for n in names:
            b64 = body[n].to(where).to(torch.float64)  # moved as float32, widened on the device (exact)
            for i, coef, add in users:
                if add:
                    tmp = scratch[: b64.numel()].view(b64.shape)
                    torch.mul(b64, coef, out=tmp)
                    accs[i][n].add_(tmp)
                else:
                    torch.mul(b64, coef, out=accs[i][n])
        del body
    shapes = {k: tuple(v.shape) for k, v in pretrained.items()}
    for p, acc, go in zip(points, accs, started):
        if not go:  # no term at all: the zero vector
            for t in acc.values():
                t.zero_()
        if p.direction is not None:
            for n, t in p.direction.draw(shapes).items():
                acc[n] += t.to(where)
    return accs


def materialize_many(
    points: Sequence[Point],
    pretrained: Mapping[str, torch.Tensor],
    prefix: str,
    loaded: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
) -> list[dict[str, torch.Tensor]]:
    """The points' body tensors (float32, rounded from the float64 sums of `accumulate`),
    names as in `pretrained` (the pretrained body)."""
    return [{n: t.to(torch.float32) for n, t in acc.items()} for acc in accumulate(points, pretrained, prefix, loaded)]


def materialize(
    point: Point,
    pretrained: Mapping[str, torch.Tensor],
    prefix: str,
    loaded: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
) -> dict[str, torch.Tensor]:
    """One point's body tensors (float32); see materialize_many."""
    return materialize_many([point], pretrained, prefix, loaded)[0]
