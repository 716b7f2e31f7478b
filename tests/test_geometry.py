"""The streamed Gram matrix equals the in-memory one, for any split into ranges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightspace.geometry import cosine, euclidean, gram_partial, norms, part_range
from weightspace.weights import make_index, write_flat

IDENTITY = {"model_id": "m", "dataset": "d", "families": [], "seed": 0, "base_model": "b", "checkpoint_sha256": "0" * 64}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    g = torch.Generator().manual_seed(0)
    shapes = {"a": (37, 11), "b": (300,), "c": (5, 7)}
    base = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    index = make_index(base)
    write_flat(base, index, root / "pre", IDENTITY, 1024, 2048)
    models, vectors = [], []
    for i in range(5):
        body = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in base.items()}
        write_flat(body, index, root / f"m{i}", IDENTITY, 1024, 2048)
        models.append(root / f"m{i}")
        vectors.append(np.concatenate([(body[k] - base[k]).reshape(-1).numpy() for k in shapes]).astype(np.float64))
    return models, root / "pre", np.stack(vectors)


def test_parts_cover_all_positions_aligned():
    ranges = [part_range(10_000, i, 4, align=1024) for i in range(4)]
    assert ranges[0][0] == 0 and ranges[-1][1] == 10_000
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert all(r[0] % 1024 == 0 for r in ranges)
    with pytest.raises(ValueError):
        part_range(10, 4, 4)


@pytest.mark.parametrize("parts,block", [(1, 1 << 20), (3, 100), (7, 1), (2, 4096)])
def test_summed_partial_grams_equal_in_memory_gram(zoo, parts, block):
    models, pre, tau = zoo
    n = tau.shape[1]
    total = sum(gram_partial(models, pre, *part_range(n, i, parts), block=block) for i in range(parts))
    np.testing.assert_allclose(total, tau @ tau.T, rtol=1e-6)


def test_similarities_from_gram(zoo):
    _, _, tau = zoo
    gram = tau @ tau.T
    n = np.linalg.norm(tau, axis=1)
    np.testing.assert_allclose(norms(gram), n, rtol=1e-12)
    np.testing.assert_allclose(cosine(gram), (tau @ tau.T) / np.outer(n, n), rtol=1e-10)
    dist = np.linalg.norm(tau[:, None, :] - tau[None, :, :], axis=2)
    np.testing.assert_allclose(euclidean(gram), dist, rtol=1e-8, atol=1e-10)
