"""Speed-up of the Ray executor's workers: ``kdbench eval`` of one run folder with the local executor, Ray with 1
worker and Ray with N workers (same metric values checked), wall time and ratios printed.

    python benchmarks/executor_scaling.py                       # static on hdtf-mini, CPBD, 1 vs 2 workers
    python benchmarks/executor_scaling.py --workers 4 --metrics cpbd,pose_offline
    python benchmarks/executor_scaling.py --device cuda --workers 8 --dataset ~/HDTF/eval   # a GPU server

Ray's start (a few seconds) is excluded: it is started once before the clocks run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="hdtf-mini")
    ap.add_argument("--method", default="static")
    ap.add_argument("--metrics", default="cpbd")
    ap.add_argument("--set", action="append", default=[], metavar="METRIC.KEY=VALUE")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from kdbench.config import parse_sets
    from kdbench.dataset import load_dataset
    from kdbench.evaluate import evaluate_run
    from kdbench.executors.ray_cluster import init_ray
    from kdbench.runner import run_method

    ds = load_dataset(args.dataset)
    metrics = args.metrics.split(",")
    sets = parse_sets(args.set)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        run_method(args.method, ds, run_dir, device=args.device, progress=False, warmup=0)
        init_ray(None)
        import ray

        print(f"{args.method} on {ds.name} ({len(ds)} clips), metrics {args.metrics}, device {args.device}, "
              f"{os.cpu_count()} CPUs, Ray {ray.__version__}, load {os.getloadavg()[0]:.2f}")
        results = {}
        for label, kw in (("local", {"executor": "local"}), ("ray x1", {"executor": "ray", "workers": 1}),
                          (f"ray x{args.workers}", {"executor": "ray", "workers": args.workers})):
            t0 = time.perf_counter()
            doc = evaluate_run(run_dir, metrics, sets, device=args.device, out=Path(tmp) / f"{label}.json",
                               progress=False, **kw)
            results[label] = (time.perf_counter() - t0, {m: doc["metrics"][m]["per_clip"] for m in metrics})
            print(f"{label:10s} {results[label][0]:8.2f} s")
        base = results["local"]
        for label, (sec, per_clip) in results.items():
            same = per_clip == base[1]
            print(f"{label:10s} speed-up vs local {base[0] / sec:5.2f}x, per-clip values identical: {same}")


if __name__ == "__main__":
    main()
