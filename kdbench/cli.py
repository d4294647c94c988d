"""The ``kdbench`` command line. Every subcommand has ``--help`` with examples."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import KdbenchError

RAW = argparse.RawDescriptionHelpFormatter


def _sub(subparsers, name: str, help: str, examples: str, description: str | None = None):
    return subparsers.add_parser(name, help=help, description=description or help, epilog=f"examples:\n{examples}",
                                 formatter_class=RAW)


def _print_table(rows: list[dict], cols: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))


# --- ls ---------------------------------------------------------------------------------------------
def cmd_ls(args) -> int:
    from .dataset import BUILTIN_DATASETS
    from .registry import METHODS, METRICS

    if args.what == "methods":
        from .runtime.spec import SPECS, env_for

        rows = []
        for n in METHODS.names():
            try:
                info = METHODS.get(n).info
                status = env_for(n).status() + f" (kdbench setup {n})" * (env_for(n).status() != "ready") \
                    if n in SPECS else "built in"
                rows.append({"name": n, "status": status, "paper_row": info.paper_row or "",
                             "description": info.description})
            except Exception as e:  # noqa: BLE001 - a broken plugin is listed, not fatal
                rows.append({"name": n, "description": f"(cannot load: {e})"})
        _print_table(rows, ["name", "status", "paper_row", "description"])
    elif args.what == "metrics":
        rows = []
        for n in METRICS.names():
            try:
                info = METRICS.get(n).info
                outs = ", ".join(f"{k}{'↑' if o.higher_is_better else '↓' if o.higher_is_better is False else ''}"
                                 for k, o in info.outputs.items())
                rows.append({"name": n, "outputs": outs, "version": info.version, "needs_gt": info.needs_gt,
                             "weights": ",".join(info.weights) or "-", "description": info.description})
            except Exception as e:  # noqa: BLE001
                rows.append({"name": n, "description": f"(cannot load: {e})"})
        _print_table(rows, ["name", "outputs", "version", "needs_gt", "weights", "description"])
    else:
        _print_table([{"name": k, "description": v} for k, v in BUILTIN_DATASETS.items()], ["name", "description"])
    return 0


# --- data -------------------------------------------------------------------------------------------
def cmd_data_ls(args) -> int:
    from .dataset import load_dataset

    ds = load_dataset(args.dataset)
    print(f"{ds.name}: {len(ds)} clips, manifest_id {ds.manifest_id}, root {ds.root}")
    rows = [{"clip_id": c.clip_id, "gt_video": c.gt_video.name if c.gt_video else "-",
             "ref_image": c.ref_image.name if c.ref_image else "(GT frame 0)",
             "audio": c.audio.name if c.audio else "(GT track)", "n_frames": c.n_frames or "-"} for c in ds.clips]
    _print_table(rows, ["clip_id", "gt_video", "ref_image", "audio", "n_frames"])
    return 0


def cmd_data_verify(args) -> int:
    from .dataset import load_dataset, verify_dataset

    rep = verify_dataset(load_dataset(args.dataset))
    if args.json:
        print(json.dumps(rep.to_json(), indent=2))
    else:
        s = rep.summary
        print(f"{s['name']}: {s['n_clips']} clips ({s['n_with_gt']} with GT video), manifest_id {s['manifest_id']}")
        print(f"durations {s['duration_s']['min']}..{s['duration_s']['max']} s, fps {s['fps']}")
        for p in rep.problems:
            print(f"PROBLEM: {p}")
        print("OK: every file present and matching its sha256" if rep.ok else f"FAILED: {len(rep.problems)} problem(s)")
    return 0 if rep.ok else 1


def cmd_data_prepare(args) -> int:
    from .hdtf_prepare import prepare_hdtf

    ds = prepare_hdtf(args.raw, args.out, annotations=args.annotations, clips_file=args.clips,
                      seconds=args.seconds, size=args.size, progress=not args.quiet)
    print(f"prepared {len(ds)} clips in {args.out} (manifest_id {ds.manifest_id})")
    return 0


# --- run / eval / sweep -------------------------------------------------------------------------------
def _size(text: str | None):
    if not text:
        return None
    w, _, h = text.partition("x")
    return (int(w), int(h or w))


def cmd_run(args) -> int:
    from .config import parse_sets
    from .dataset import load_dataset
    from .runner import run_method

    ds = load_dataset(args.dataset)
    out = Path(args.out or f"runs/{args.method}-{ds.name}")
    s = run_method(args.method, ds, out, options=parse_sets(args.set), seed=args.seed, device=args.device,
                   limit=args.limit, warmup=args.warmup, frame_size=_size(args.frame_size), grid=args.grid,
                   progress=not args.quiet)
    print(f"{out}: {len(s.ok)} generated, {len(s.resumed)} already done, {len(s.failed)} failed"
          + (f" (models loaded in {s.load_seconds:.1f} s)" if s.load_seconds is not None else ""))
    for cid, why in s.failed.items():
        print(f"  failed {cid}: {why}")
    return 0 if not s.failed or s.ok or s.resumed else 1


def _print_metrics(doc: dict) -> None:
    print(f"{doc['run']['method']} on {doc['dataset']['name']} ({doc['dataset']['n_clips']} clips, "
          f"manifest_id {doc['dataset']['manifest_id']})")
    for name, m in doc["metrics"].items():
        if m["status"] != "ok":
            print(f"  {name:13s} {m['status']}: {m.get('skip_reason')}")
            continue
        parts = []
        for out_name, a in m["aggregate"].items():
            if a.get("mean") is None:
                parts.append(f"{out_name}=n/a")
            else:
                parts.append(f"{out_name}={a['mean']:.4g}" + (f"±{a['std']:.3g}" if a.get("std") else ""))
        fails = f" ({len(m['failures'])} clip failures)" if m["failures"] else ""
        print(f"  {name:13s} {'  '.join(parts)}  n={next(iter(m['aggregate'].values()), {}).get('n')}{fails}")
        for cid, why in list(m["failures"].items())[:3]:
            print(f"      {cid}: {why}")


def cmd_eval(args) -> int:
    from .config import parse_sets
    from .dataset import load_dataset
    from .evaluate import evaluate_run, import_videos

    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    if args.videos:
        if not args.dataset:
            raise KdbenchError("--videos needs --dataset (which clips, reference images and audio they belong to)")
        out = Path(args.out or f"runs/external-{Path(args.videos).name}")
        import_videos(args.videos, load_dataset(args.dataset), out, grid=args.grid, progress=not args.quiet)
        run_dir = out
    else:
        if not args.run_dir:
            raise KdbenchError("give a RUN_DIR, or --videos DIR --dataset NAME")
        run_dir = Path(args.run_dir)
    doc = evaluate_run(run_dir, metrics, parse_sets(args.set), device=args.device, progress=not args.quiet)
    _print_metrics(doc)
    print(f"wrote {run_dir / 'metrics.json'}")
    return 0


def cmd_sweep(args) -> int:
    from .config import parse_sets, parse_value
    from .dataset import load_dataset
    from .evaluate import evaluate_run
    from .runner import run_method

    sets = parse_sets(args.set)
    swept = [k for k, v in sets.items() if isinstance(v, str) and "," in v or isinstance(v, list)]
    if len(swept) != 1:
        raise KdbenchError("sweep needs exactly one --set key with several comma-separated values, "
                           "e.g. --set ddim_steps=1,5,10")
    key = swept[0]
    values = sets[key] if isinstance(sets[key], list) else [parse_value(v) for v in sets[key].split(",")]
    ds = load_dataset(args.dataset)
    out = Path(args.out or f"runs/sweep-{args.method}-{key}")
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    docs = []
    for v in values:
        run_dir = out / f"{key}={v}"
        print(f"== {key}={v}")
        run_method(args.method, ds, run_dir, options={**sets, key: v}, seed=args.seed, device=args.device,
                   limit=args.limit, warmup=args.warmup, progress=not args.quiet)
        docs.append(evaluate_run(run_dir, metrics, device=args.device, progress=not args.quiet))
    from reports.table import sweep_markdown, sweep_table

    table = sweep_table(docs, key)
    md = sweep_markdown(table)
    (out / "sweep.md").write_text(md + "\n")
    table.to_csv(out / "sweep.csv")
    print(md)
    print(f"wrote {out / 'sweep.md'}")
    return 0


# --- setup ----------------------------------------------------------------------------------------------
def cmd_setup(args) -> int:
    from .runtime.setup import setup_method
    from .runtime.spec import get_spec

    spec = get_spec(args.method)
    rec = setup_method(spec, source=args.source, python=args.python, share=args.share_site,
                       installer=args.installer, fetch_weights=not args.no_weights, progress=not args.quiet)
    print(f"{spec.name}: {spec.repo}@{rec['source']['commit'][:12]} ({rec['source']['kind']}, "
          f"{'verified' if rec['source']['verified'] else 'unverified'}), Python {rec['python']}, "
          f"{len(rec['packages'])} packages, {len(rec['weights'])} weight files linked, in {rec['seconds']} s")
    for why in rec["weights_missing"]:
        print(f"  missing: {why}")
    print("ready" if not rec["weights_missing"] else
          f"not ready: fetch the missing weights, then re-run `kdbench setup {spec.name}`")
    return 0 if not rec["weights_missing"] else 1


# --- weights --------------------------------------------------------------------------------------------
def cmd_weights(args) -> int:
    from .weights import WeightsManager

    wm = WeightsManager()
    if args.action == "ls":
        rows = wm.status()
        for r in rows:
            r["present"] = "yes" if r["present"] else "no"
        _print_table(rows, ["name", "present", "used_by", "checksum", "source"])
        print(f"cache: {wm.home / 'weights'}")
        return 0
    names = args.names or (sorted(wm.entries) if args.action in ("fetch", "verify") else [])
    if args.action == "path":
        if len(names) != 1:
            raise KdbenchError("`kdbench weights path` takes exactly one NAME")
        print(wm.path(names[0]))
        return 0
    bad = 0
    for n in names:
        try:
            p = wm.fetch(n, progress=not args.quiet) if args.action == "fetch" else wm.path(n)
            print(f"ok       {n}: {p}")
        except KdbenchError as e:
            bad += 1
            print(f"{'missing' if 'not available' in str(e) or 'download' in str(e) else 'FAILED':8s} {n}: {e}")
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kdbench", formatter_class=RAW,
        description="Evaluate and benchmark audio-driven talking-portrait generators (KDTalker and baselines) "
                    "on HDTF with the KDTalker paper's metrics: LSE-C/D, head-motion diversity, FID, CPBD, CSIM, FPS.",
        epilog="examples:\n  kdbench run --method static --dataset hdtf-mini --out runs/static\n"
               "  kdbench eval runs/static\n  kdbench report runs/real runs/static --out report\n"
               "  kdbench ls metrics")
    p.add_argument("--version", action="version", version=f"kdbench {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sp = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ls = _sub(sp, "ls", "list methods, metrics or datasets", "  kdbench ls metrics\n  kdbench ls methods")
    ls.add_argument("what", choices=["methods", "metrics", "datasets"])
    ls.set_defaults(func=cmd_ls)

    data = _sub(sp, "data", "list, verify and prepare datasets",
                "  kdbench data ls hdtf-mini\n  kdbench data verify hdtf-mini\n"
                "  kdbench data prepare hdtf --raw ~/HDTF/raw --annotations ~/HDTF/HDTF_dataset --out ~/HDTF/eval")
    dsp = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    d_ls = _sub(dsp, "ls", "list the clips of a dataset", "  kdbench data ls hdtf-mini\n  kdbench data ls ./my_set")
    d_ls.add_argument("dataset", help="built-in name (hdtf-mini, hdtf) or dataset folder")
    d_ls.set_defaults(func=cmd_data_ls)
    d_v = _sub(dsp, "verify", "check every file of a dataset: presence, sha256, fps, frame counts, durations",
               "  kdbench data verify hdtf-mini\n  kdbench data verify ~/HDTF/eval --json")
    d_v.add_argument("dataset")
    d_v.add_argument("--json", action="store_true", help="machine-readable output")
    d_v.set_defaults(func=cmd_data_verify)
    d_p = _sub(dsp, "prepare", "build the evaluation set from raw HDTF downloads",
               "  kdbench data prepare hdtf --raw ~/HDTF/raw --out ~/HDTF/eval\n"
               "  kdbench data prepare hdtf --raw ~/HDTF/raw --annotations ~/HDTF/HDTF_dataset "
               "--clips test_clips.txt --out ~/HDTF/eval",
               description="From raw HDTF downloads named {subset}_{video}_{clip:03d}.mp4 (universome/HDTF naming), "
                           "write per clip: the first N s at 25 fps, a square face crop resized to 512x512 (the "
                           "annotation crop box scaled to the downloaded resolution when --annotations is given), "
                           "16 kHz mono wav, the first frame as reference PNG; plus manifest.jsonl.")
    d_p.add_argument("name", choices=["hdtf"])
    d_p.add_argument("--raw", required=True, help="folder of raw clips {subset}_{video}_{clip:03d}.mp4")
    d_p.add_argument("--out", required=True, help="output dataset folder")
    d_p.add_argument("--annotations", help="HDTF_dataset/ folder of the official repo (crop boxes, resolutions)")
    d_p.add_argument("--clips", help="text file with one clip id per line (default: every raw clip)")
    d_p.add_argument("--seconds", type=float, default=8.0, help="length kept from the start (default 8)")
    d_p.add_argument("--size", type=int, default=512, help="output frame size (default 512)")
    d_p.add_argument("-q", "--quiet", action="store_true")
    d_p.set_defaults(func=cmd_data_prepare)

    run = _sub(sp, "run", "generate a dataset's clips with one method into a run folder (resumable)",
               "  kdbench run --method static --dataset hdtf-mini\n"
               "  kdbench run --method kdtalker --dataset hdtf --out runs/kdt --device cuda --seed 0\n"
               "  kdbench run --method kdtalker --dataset hdtf-mini --set ddim_steps=5 --limit 2")
    run.add_argument("--method", required=True, help="method name (see `kdbench ls methods`)")
    run.add_argument("--dataset", default="hdtf-mini", help="built-in name or folder (default hdtf-mini)")
    run.add_argument("--out", help="run folder (default runs/<method>-<dataset>); re-running resumes it")
    run.add_argument("--limit", type=int, help="only the first N clips")
    run.add_argument("--seed", type=int, default=0, help="seed for every random draw (default 0)")
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default: cuda if available)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="method option, e.g. ddim_steps=5")
    run.add_argument("--warmup", type=int, default=1, help="untimed warm-up generations before timing (default 1)")
    run.add_argument("--frame-size", help="normalised frame size WxH (default: the dataset's, 512x512 for HDTF)")
    run.add_argument("--grid", help="cut one panel from grid outputs: COLS[xROWS]:INDEX[,pad=N] (0-based panel, "
                     "row-major; pad = torchvision make_grid padding in pixels), e.g. 3:1, or 3:2,pad=2 for "
                     "an external tool's grid (the aniportrait method declares its own: 3:2,pad=2)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)

    ev = _sub(sp, "eval", "score a run folder, or any folder of <clip_id>.mp4, with the metrics",
              "  kdbench eval runs/static\n  kdbench eval runs/kdt --metrics lse,fid --set lse.protocol=full\n"
              "  kdbench eval --videos ~/sadtalker_out --dataset hdtf --metrics lse,csim --out runs/sadtalker")
    ev.add_argument("run_dir", nargs="?", help="run folder written by `kdbench run`")
    ev.add_argument("--videos", help="score this folder of <clip_id>.mp4 instead (normalised into --out first)")
    ev.add_argument("--dataset", help="dataset the --videos belong to")
    ev.add_argument("--out", help="run folder for --videos (default runs/external-<folder>)")
    ev.add_argument("--metrics", help="comma-separated metric names (default: all; see `kdbench ls metrics`)")
    ev.add_argument("--set", action="append", metavar="METRIC.KEY=VALUE", help="metric option, e.g. lse.protocol=full")
    ev.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ev.add_argument("--grid", help="with --videos: cut one panel from grid outputs, COLS[xROWS]:INDEX[,pad=N], e.g. "
                    "3:2,pad=2 for AniPortrait's 1544x516 output (panel 2 of 3, 2-pixel make_grid padding)")
    ev.add_argument("-q", "--quiet", action="store_true")
    ev.set_defaults(func=cmd_eval)

    sw = _sub(sp, "sweep", "run and evaluate one method over several values of an option (paper Table 6 layout)",
              "  kdbench sweep --method kdtalker --set ddim_steps=1,5,10,20,50,100,200 --dataset hdtf")
    sw.add_argument("--method", required=True)
    sw.add_argument("--dataset", default="hdtf-mini")
    sw.add_argument("--set", action="append", metavar="KEY=V1,V2,...", required=True)
    sw.add_argument("--out", help="parent folder of the runs (default runs/sweep-<method>-<key>)")
    sw.add_argument("--metrics", help="comma-separated metrics (default: all)")
    sw.add_argument("--limit", type=int)
    sw.add_argument("--seed", type=int, default=0)
    sw.add_argument("--device", default="auto")
    sw.add_argument("--warmup", type=int, default=1)
    sw.add_argument("-q", "--quiet", action="store_true")
    sw.set_defaults(func=cmd_sweep)

    try:
        from reports.cli import add_check_parser, add_report_parser
    except ImportError:  # reports not installed alongside
        pass
    else:
        add_report_parser(sp)
        add_check_parser(sp)

    st = _sub(sp, "setup", "install a baseline's official code, environment and weights (methods/<name>/)",
              "  kdbench setup sadtalker\n"
              "  kdbench setup sadtalker --source ~/src/SadTalker          # offline: a clone or folder\n"
              "  kdbench setup sadtalker --python /usr/bin/python3.11 --share-site /opt/torch/site-packages",
              description="Fetch the method's upstream code at its pinned commit (checksum-verified archive, or "
                          "--source), create its virtual environment (uv, else python -m venv), install this "
                          "project's pinned requirements, and link its checksum-pinned weights where the upstream "
                          "code expects them, all under $KDBENCH_HOME/methods/<name>/. `kdbench ls methods` shows "
                          "which methods are ready; `kdbench run --method NAME` then runs the official code in a "
                          "persistent worker.")
    st.add_argument("method", help="a method that runs upstream code (see `kdbench ls methods`)")
    st.add_argument("--source", help="local git repository/checkout (the pinned commit is checked out from it) or "
                                     "folder of the upstream code, instead of downloading it")
    st.add_argument("--python", help="interpreter path or version for the venv (default: the method's version)")
    st.add_argument("--share-site", metavar="DIR", help="site-packages folder with torch to reuse (appended to "
                                                        "the venv's path; torch is then not installed again)")
    st.add_argument("--installer", choices=["auto", "uv", "pip"], default="auto",
                    help="auto: uv when on PATH, else pip (pip reads pip.conf, e.g. local wheel folders)")
    st.add_argument("--no-weights", action="store_true", help="link only weights already in the cache")
    st.add_argument("-q", "--quiet", action="store_true")
    st.set_defaults(func=cmd_setup)

    w = _sub(sp, "weights", "list, fetch, verify and locate model weights",
             "  kdbench weights ls\n  kdbench weights fetch syncnet_v2 sfd_face\n  kdbench weights verify\n"
             "  kdbench weights path pt_inception")
    w.add_argument("action", choices=["ls", "fetch", "verify", "path"])
    w.add_argument("names", nargs="*", help="weight names (default for fetch/verify: all)")
    w.add_argument("-q", "--quiet", action="store_true")
    w.set_defaults(func=cmd_weights)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KdbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished clips are kept; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
