"""Helpers of the benchmark scripts that the suite does not run (they are slow): the parts that
can silently go stale or wrong are checked here."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_named_mutations_still_find_each_line_they_mutate():
    # Catches: a source line named by benchmarks/named_mutations.sh changed without the script
    # (it happened once: the script then stopped before its third mutation).
    res = subprocess.run(
        ["bash", "benchmarks/named_mutations.sh", "--check"],
        cwd=ROOT,
        env={**os.environ, "PY": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("found in src/skfingerprint/") == 3


def test_vit_b_flops_count_two_per_multiply_add():
    # Catches: the roofline divided by fvcore's 17.56 GMACs ("GFLOPs") instead of 2 x that, which
    # halves the image rate the matmul peak allows; and a block count ignored.
    from bench_embed import vit_b_gflop

    assert vit_b_gflop() == pytest.approx(2 * 17.56, rel=0.005)
    # the 12 blocks cost the same each; the patch embedding is the rest (~0.7%)
    assert vit_b_gflop(9) == pytest.approx(vit_b_gflop(0) + 0.75 * (vit_b_gflop() - vit_b_gflop(0)))
    assert 0.005 < vit_b_gflop(0) / vit_b_gflop() < 0.01


def test_hull_residual_is_zero_inside_the_affine_hull_and_the_distance_outside():
    # Catches: weights not renormalised to sum 1 (a plain linear fit reaches points off the
    # affine hull, e.g. a scaled copy), the regulariser too large, or the residual taken
    # against the wrong neighbours.
    from probe_manifold import hull_residual

    rng = np.random.default_rng(0)
    neighbours = rng.normal(size=(3, 4, 50))  # 3 points, 4 neighbours each, 50 dims
    w = np.array([0.5, 0.3, 0.1, 0.1])
    inside = np.einsum("k,nkd->nd", w, neighbours)
    assert np.all(hull_residual(inside, neighbours) < 1e-2 * np.linalg.norm(inside, axis=1))
    # a point off the hull by a direction orthogonal to it: the residual is that distance
    offset = rng.normal(size=(3, 50))
    for i in range(3):
        basis, _ = np.linalg.qr((neighbours[i] - neighbours[i, :1]).T)
        offset[i] -= basis @ (basis.T @ offset[i])
    offset *= 2.0 / np.linalg.norm(offset, axis=1, keepdims=True)
    got = hull_residual(inside + offset, neighbours)
    assert got == pytest.approx(2.0, rel=0.02)
    # a scaled copy of a neighbour is off the affine hull (on the linear span)
    assert hull_residual(3 * neighbours[:, 0], neighbours).min() > 1.0
