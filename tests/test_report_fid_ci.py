"""FID's CI by resampling clips: the FID metric's saved activations -> pooled moments -> the same FID as
the metric; resamples equal FIDs of explicitly pooled frames; paired FID comparisons."""

from __future__ import annotations

import numpy as np
import pytest
from report_fixtures import make_doc, metric_entry, write_run
from test_fid import _StubFID, make_clip

import metrics.fid as kf
from reports import fid_ci, stats
from reports.compare import compare_pair
from reports.runs import load_run
from reports.table import build_table

CLIPS = ["c1", "c2", "c3", "c4"]


def _run(tmp_path, name: str, shift: float, monkeypatch) -> tuple:
    """A run folder whose fid entry comes from the (stub-network) FID metric with save_activations on."""
    monkeypatch.setenv("KDBENCH_HOME", str(tmp_path / "home"))
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    m = _StubFID(options={"save_activations": True})
    m.context = {"manifest_id": "m1", "run_dir": str(folder)}
    recs = {}
    for i, cid in enumerate(CLIPS):
        gt = rng.integers(0, 256, (8 + 2 * i, 16, 16, 3), dtype=np.uint8)
        gen = np.clip(gt.astype(float) + shift + rng.normal(0, 20, gt.shape), 0, 255).astype(np.uint8)
        recs[cid] = m.score_clip(make_clip(cid, tmp_path / "gt.mp4", gt, gen, f"{i}" * 64))
    agg = m.aggregate(recs)
    doc = make_doc("kdtalker" if name == "a" else "sadtalker", {"cpbd": {"cpbd": [0.1, 0.2, 0.3, 0.4]}},
                   clips=CLIPS)
    doc["metrics"]["fid"] = metric_entry("fid", recs, aggregate=agg)
    write_run(folder, doc)
    return folder, m, agg["fid"]["mean"]


def test_saved_activations_give_the_metrics_fid_and_resamples_pool_frames(tmp_path, monkeypatch):
    folder, m, fid = _run(tmp_path, "a", 10.0, monkeypatch)
    path = folder / fid_ci.ACTIVATIONS_FILE
    ids, gen, gt = fid_ci.load_moments(path)
    assert ids == CLIPS and gen.n.tolist() == [8, 10, 12, 14]
    assert fid_ci.fid_of(np.ones(4), gen, gt) == pytest.approx(fid, rel=1e-9)
    with np.load(path) as z:
        acts_g = [z["gen"][z["gen_offsets"][i]:z["gen_offsets"][i + 1]] for i in range(4)]
        acts_t = [z["gt"][z["gt_offsets"][i]:z["gt_offsets"][i + 1]] for i in range(4)]
    np.testing.assert_array_equal(acts_g[1], m._gen["c2"])
    # a resample taking clip 0 twice, clip 2 once, clip 3 once = FID of those frames concatenated
    counts = np.array([2, 0, 1, 1])
    pooled_g = np.concatenate([acts_g[0], acts_g[0], acts_g[2], acts_g[3]])
    pooled_t = np.concatenate([acts_t[0], acts_t[0], acts_t[2], acts_t[3]])
    assert fid_ci.fid_of(counts, gen, gt) == pytest.approx(kf.fid_from_activations(pooled_g, pooled_t), rel=1e-7)
    mu, sigma = gen.pooled(counts)
    np.testing.assert_allclose(mu, pooled_g.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(pooled_g.astype(np.float64), rowvar=False), rtol=1e-9, atol=1e-9)


def test_fid_cell_gets_a_clip_bootstrap_ci(tmp_path, monkeypatch):
    folder, _, fid = _run(tmp_path, "a", 10.0, monkeypatch)
    run = load_run(folder)
    iv, why = fid_ci.fid_interval(run, resamples=10_000, seed=3, expected=fid)
    assert why is None and iv.resamples == fid_ci.MAX_RESAMPLES and iv.n == 4
    _, gen, gt = fid_ci.load_moments(folder / fid_ci.ACTIVATIONS_FILE)
    idx = np.random.default_rng(3).integers(0, 4, size=(fid_ci.MAX_RESAMPLES, 4))
    boot = [fid_ci.fid_of(np.bincount(r, minlength=4), gen, gt) for r in idx]
    assert (iv.lo, iv.hi) == pytest.approx(stats.percentile_interval(np.array(boot)))
    assert iv.lo < fid < iv.hi
    t = build_table([run], ci=300, seed=3)
    c = t.cells[("KDTalker", "FID")]
    assert c.ci_lo is not None and t.cell_text("KDTalker", "FID").startswith(f"{fid:.3f} [")
    # a recorded value the activations do not reproduce: no CI
    assert fid_ci.fid_interval(run, 100, 0, expected=fid + 1)[0] is None
    (folder / fid_ci.ACTIVATIONS_FILE).unlink()
    iv, why = fid_ci.fid_interval(run, 100, 0, expected=fid)
    assert iv is None and "save_activations=true" in why


def test_paired_fid(tmp_path, monkeypatch):
    a, _, fa = _run(tmp_path, "a", 5.0, monkeypatch)
    b, _, fb = _run(tmp_path, "b", 60.0, monkeypatch)
    ra, rb = load_run(a), load_run(b)
    res, why = fid_ci.paired_fid(ra, rb, resamples=150, seed=0)
    assert why == "" and res.test == "paired bootstrap" and res.n == 4
    assert (res.mean_a, res.mean_b, res.diff) == pytest.approx((fa, fb, fa - fb))
    assert fb > fa and res.hi < 0 and res.p_value == 0.0
    same, _ = fid_ci.paired_fid(ra, ra, resamples=50, seed=0)
    assert (same.diff, same.lo, same.hi, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    row = compare_pair(ra, rb, resamples=150).set_index("metric").loc["FID"]
    assert row["test"] == "paired bootstrap" and row["better"] == "KDTalker"  # lower FID is better
