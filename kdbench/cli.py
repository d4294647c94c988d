"""The ``kdbench`` command line. Every subcommand has ``--help`` with examples."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import textwrap
from collections import Counter
from pathlib import Path

from . import __version__
from .errors import KdbenchError, generic_reason

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


def _print_short(rows: list[dict], cols: list[str], last: str) -> None:
    """One line per row, no wider than the terminal: ``cols`` in full, ``last`` cut with an ellipsis."""
    width = shutil.get_terminal_size((100, 24)).columns
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    room = max(20, width - sum(widths.values()) - 2 * len(cols) - 1)
    print("  ".join(c.ljust(widths[c]) for c in cols) + "  " + last)
    for r in rows:
        text = str(r.get(last, ""))
        text = text if len(text) <= room else text[:room - 1].rstrip() + "…"
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) + "  " + text)


def _first_items(text: str, width: int) -> str:
    """The leading comma-separated items of ``text`` that fit ``width`` characters, then ``+N``."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    out: list[str] = []
    for i, item in enumerate(items):
        rest = f" +{len(items) - i - 1}" if i < len(items) - 1 else ""
        if out and len(", ".join([*out, item]) + rest) > width:
            return ", ".join(out) + f" +{len(items) - len(out)}"
        out.append(item)
    return ", ".join(out)


def _print_long(rows: list[dict], fields: list[str]) -> None:
    """Each row as a block: its name, then one wrapped ``field: value`` line per field."""
    width = min(100, shutil.get_terminal_size((100, 24)).columns)
    for r in rows:
        print(r["name"])
        for f in fields:
            if r.get(f) not in (None, ""):
                print(textwrap.fill(str(r[f]), width, initial_indent=f"  {f}: ",
                                    subsequent_indent=" " * (len(f) + 4)))


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
                status = env_for(n).status() if n in SPECS else "built in"
                if status not in ("ready", "built in"):
                    status += f" (kdbench setup {n})"
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
                rows.append({"name": n, "outputs": outs, "version": info.version,
                             "GT": "yes" if info.needs_gt else "no",
                             "weights": ", ".join(info.weights) or "-", "description": info.description})
            except Exception as e:  # noqa: BLE001
                rows.append({"name": n, "outputs": "", "GT": "", "description": f"(cannot load: {e})"})
        if args.long:
            _print_long(rows, ["outputs", "version", "GT", "weights", "description"])
        else:
            short = [{**r, "outputs": _first_items(r.get("outputs", ""), 28)} for r in rows]
            _print_short(short, ["name", "GT", "outputs"], "description")
            print("(GT: needs a GT video; details, versions and weights: `kdbench ls metrics --long`)")
    else:
        _print_table([{"name": k, "description": v} for k, v in BUILTIN_DATASETS.items()], ["name", "description"])
    return 0


# --- data -------------------------------------------------------------------------------------------
def cmd_data_ls(args) -> int:
    from .dataset import load_dataset

    ds = load_dataset(args.dataset)
    try:
        size = "x".join(map(str, ds.frame_size()))
    except KdbenchError as e:
        size = f"invalid ({e})"
    print(f"{ds.name}: {len(ds)} clips, manifest_id {ds.manifest_id}, frame size {size}, "
          f"{'pinned' if ds.pinned else 'unpinned (no manifest)'} checksums, root {ds.root}")
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
        for n in rep.notes:
            print(f"NOTE: {n}")
        for p in rep.problems:
            print(f"PROBLEM: {p}")
        what = "matching its sha256" if s["pinned_checksums"] else "readable (checksums not pinned)"
        print(f"OK: every file present and {what}; audio long enough and not silent" if rep.ok
              else f"FAILED: {len(rep.problems)} problem(s)")
    return 0 if rep.ok else 1


def cmd_data_freeze(args) -> int:
    from .dataset import MANIFEST_NAME, load_dataset

    ds = load_dataset(args.dataset)
    out = Path(args.out) if args.out else ds.root / MANIFEST_NAME
    if out.exists() and not args.force:
        raise KdbenchError(f"{out} exists; pass --force to overwrite it (its pinned checksums are then replaced)")
    path = ds.write_manifest(out)
    print(f"wrote {path}: {len(ds)} clips with their sha256 pinned (manifest_id {ds.manifest_id}); "
          f"`kdbench data verify {path.parent if path.name == MANIFEST_NAME else path}` now checks against it")
    return 0


def cmd_data_prepare(args) -> int:
    from .hdtf_prepare import prepare_hdtf

    ds = prepare_hdtf(args.raw, args.out, annotations=args.annotations, clips_file=args.clips,
                      seconds=args.seconds, size=args.size, progress=not args.quiet)
    print(f"prepared {len(ds)} clips in {args.out} (manifest_id {ds.manifest_id})")
    return 0


# --- run / eval / sweep -------------------------------------------------------------------------------
def _add_executor_args(p) -> None:
    g = p.add_argument_group("executor", "where clips are processed: this process (local, the default) or Ray "
                                         "actors on every GPU of this machine or a cluster; same results either way")
    g.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local (default) or ray (needs `pip install 'kdbench[ray]'`)")
    g.add_argument("--ray-address", help="Ray cluster to join: auto (the one `ray start` made here) or "
                                         "ray://HOST:10001; default: start an embedded local instance")
    g.add_argument("--workers", type=int, help="Ray actors (default: one per GPU share with --device cuda, "
                                               "else one per CPU)")
    g.add_argument("--gpus-per-worker", type=float, default=1.0,
                   help="GPUs per Ray actor; fractions share a GPU, e.g. 0.5 (default 1)")


def _executor_kwargs(args) -> dict:
    return {"executor": args.executor, "ray_address": args.ray_address, "workers": args.workers,
            "gpus_per_worker": args.gpus_per_worker}


def _size(text: str | None):
    """``--frame-size WxH`` (or ``N`` for NxN): two even integers >= 2."""
    if text is None:
        return None
    w, _, h = str(text).lower().partition("x")
    try:
        size = (int(w), int(h or w))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WxH, e.g. 512x512") from None
    if min(size) < 2 or size[0] % 2 or size[1] % 2:
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be even numbers >= 2 (H.264 yuv420p)")
    return size


def _grid(text: str) -> str:
    """``--grid COLS[xROWS]:INDEX``, checked now rather than on the first clip."""
    from .normalize import GridCrop

    try:
        GridCrop.parse(text)
    except KdbenchError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v

    parse.__name__ = f"integer >= {lo}"
    return parse


def _metric_list(text: str) -> list[str]:
    """``--metrics a,b``: a non-empty list of registered metric names."""
    from .registry import METRICS

    names = [m.strip() for m in str(text).split(",")]
    if not any(names) or not all(names):
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated metric names, e.g. lse,fid "
                                         f"(known: {', '.join(METRICS.names())})")
    unknown = [m for m in names if m not in METRICS.names()]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS.names())}")
    return list(dict.fromkeys(names))


def cmd_run(args) -> int:
    from .config import parse_sets
    from .dataset import load_dataset
    from .runner import run_method

    ds = load_dataset(args.dataset)
    out = Path(args.out or f"runs/{args.method}-{ds.name}")
    s = run_method(args.method, ds, out, options=parse_sets(args.set), seed=args.seed, device=args.device,
                   limit=args.limit, warmup=args.warmup, frame_size=args.frame_size, grid=args.grid,
                   max_pad_frames=args.max_pad_frames, letterbox=args.letterbox, progress=not args.quiet,
                   overlap_writes=args.overlap_writes, **_executor_kwargs(args))
    print(f"{out}: {len(s.ok)} generated, {len(s.resumed)} already done, {len(s.failed)} failed"
          + (f", {len(s.not_applicable)} not applicable" if s.not_applicable else "")
          + (f" (models loaded in {s.load_seconds:.1f} s)" if s.load_seconds is not None else ""))
    if s.wall_seconds and s.frames:
        how = "overlapped" if args.overlap_writes else "one after the other"
        print(f"  throughput: {s.frames} frames in {s.wall_seconds:.1f} s wall = {s.frames / s.wall_seconds:.1f} "
              f"frames per wall second (generation, normalising and writing {how}; FPS is timed per clip)")
    for cid, why in s.failed.items():
        print(f"  failed {cid}: {why}")
    for cid, why in s.not_applicable.items():
        print(f"  not applicable {cid}: {why}")
    if s.unwritten:  # a full disk is no result: the exit status says clips are missing
        print(f"error: {len(s.unwritten)} clip(s) could not be written to {out} (see above); free space and re-run "
              "the same command to finish them", file=sys.stderr)
        return 1
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
        na = m.get("not_applicable") or {}
        fails += f" ({len(na)} not applicable)" if na else ""
        print(f"  {name:13s} {'  '.join(parts)}  n={next(iter(m['aggregate'].values()), {}).get('n')}{fails}")
        for line in failure_groups(m["failures"]):
            print(f"      {line}")
    padded = (doc.get("normalizer") or {}).get("padded") or {}
    if padded:
        print(f"  padded with repeated last frames: {', '.join(f'{c} ({k})' for c, k in padded.items())}")


def failure_groups(failures: dict[str, str], show: int = 3) -> list[str]:
    """Failures grouped by reason, most frequent first: ``"N clip(s): reason (a, b, c …)"``. The clip's own id
    in a reason (a file name) is written ``<clip>``, so that the same cause groups across clips."""
    by_reason: dict[str, list[str]] = {}
    for cid, why in failures.items():
        by_reason.setdefault(generic_reason(cid, why), []).append(cid)
    counts = Counter({why: len(ids) for why, ids in by_reason.items()})
    lines = []
    for why, k in counts.most_common():
        ids = by_reason[why]
        eg = ", ".join(ids[:show]) + (" …" if len(ids) > show else "")
        lines.append(f"{k} clip(s): {why} ({eg})")
    return lines


def _print_timing(doc: dict) -> None:
    t = doc.get("timing") or {}
    parts = [f"{k} {v:.1f} s" for k, v in sorted((t.get("metrics") or {}).items(), key=lambda kv: -kv[1]) if v >= 0.05]
    if t.get("decode_s") is not None:
        parts.append(f"decode {t['decode_s']:.1f} s (background)")
    if parts:
        print(f"time: {t.get('wall_s', 0):.1f} s wall; " + ", ".join(parts))


def cmd_eval(args) -> int:
    from .config import parse_sets
    from .dataset import load_dataset
    from .evaluate import check_eval_request, evaluate_run, import_videos

    metrics = args.metrics
    check_eval_request(metrics, parse_sets(args.set), args.device)  # bad options / no GPU: fail before writing
    if args.videos:
        if not args.dataset:
            raise KdbenchError("--videos needs --dataset (which clips, reference images and audio they belong to)")
        out = Path(args.out or f"runs/external-{Path(args.videos).name}")
        import_videos(args.videos, load_dataset(args.dataset), out, grid=args.grid, frame_size=args.frame_size,
                      max_pad_frames=args.max_pad_frames, letterbox=args.letterbox, progress=not args.quiet)
        run_dir = out
    else:
        if not args.run_dir:
            raise KdbenchError("give a RUN_DIR, or --videos DIR --dataset NAME")
        run_dir = Path(args.run_dir)
    doc = evaluate_run(run_dir, metrics, parse_sets(args.set), device=args.device, progress=not args.quiet,
                       **_executor_kwargs(args))
    _print_metrics(doc)
    _print_timing(doc)
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
    metrics = args.metrics
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


def cmd_reproduce(args) -> int:
    from .config import parse_sets
    from .envinfo import resolve_device
    from .reproduce import reproduce

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    res = reproduce(args.dataset, args.out, methods=methods, table6=args.table6, metrics=metrics,
                    sets=parse_sets(args.set), seed=args.seed, device=resolve_device(args.device),
                    dry_run=args.dry_run, fetch=not args.no_fetch, progress=not args.quiet, **_executor_kwargs(args))
    print(res["plan"])
    if args.dry_run:
        return 0
    for row, why in res["skipped"].items():
        print(f"skipped {row}: {why}")
    if res["report"]:
        print(f"wrote {res['report']} (table with the paper's values: paper_comparison.md)")
    return 0 if res["ran"] else 1


_TRUST_LABEL = {"pinned": "ok", "tofu": "tofu", "unverified": "UNVERIFIED"}


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
    for why in rec["weights_missing"].values():
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
        _print_table(rows, ["name", "present", "used_by", "pin", "checksum", "source"])
        print(f"cache: {wm.home / 'weights'}")
        print("pin: sha256 / git-blob = the upstream file's published checksum; sha256-prefix = only its first hex "
              "digits are published; tofu = nothing published: the sha256 seen at first use is pinned and results "
              "record it as trust: tofu, verified: false")
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
            if args.action == "verify":  # always re-hashed: the sidecar cache is not trusted here
                rec = wm.verify(n)
                print(f"{_TRUST_LABEL[rec['trust']]:8s} {n}: {rec['file']} (sha256 {rec['sha256']}, pin {rec['pin']})")
                bad += rec["trust"] == "unverified"
                continue
            p = wm.fetch(n, progress=not args.quiet) if args.action == "fetch" else wm.path(n)
            trust = wm.record().get(n, {}).get("trust", "pinned")
            print(f"{_TRUST_LABEL[trust]:8s} {n}: {p}" + (" (no published checksum: pinned at first use)"
                                                          if trust == "tofu" else ""))
        except KdbenchError as e:
            bad += 1
            print(f"{'missing' if 'not available' in str(e) or 'download' in str(e) else 'FAILED':8s} {n}: {e}")
    return 1 if bad else 0


def _normalizer_args(p: argparse.ArgumentParser, when: str = "") -> None:
    from .normalize import DEFAULT_MAX_PAD_FRAMES

    p.add_argument("--frame-size", type=_size, metavar="WxH",
                   help=f"normalised frame size{when}, even numbers (default: the dataset's, 512x512 for HDTF)")
    p.add_argument("--grid", type=_grid, metavar="COLS[xROWS]:INDEX[,pad=N]",
                   help=f"cut one panel from grid outputs{when} (0-based panel, row-major; pad = torchvision "
                        "make_grid padding in pixels), e.g. 3:1, or 3:2,pad=2 for AniPortrait's 1544x516 output "
                        "(the aniportrait method declares its own)")
    p.add_argument("--max-pad-frames", type=_int_at_least(0), default=DEFAULT_MAX_PAD_FRAMES, metavar="N",
                   help=f"a video up to N frames shorter than its audio is padded with its last frame (recorded per "
                        f"clip); shorter ones fail{when} (default {DEFAULT_MAX_PAD_FRAMES})")
    p.add_argument("--letterbox", action="store_true",
                   help=f"fit videos of another aspect ratio on black bars{when} (default: such a clip fails)")


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
    ls.add_argument("--long", action="store_true", help="every detail (versions, weights, full descriptions)")
    ls.set_defaults(func=cmd_ls)

    data = _sub(sp, "data", "list, verify and prepare datasets",
                "  kdbench data ls hdtf-mini\n  kdbench data verify hdtf-mini\n"
                "  kdbench data prepare hdtf --raw ~/HDTF/raw --annotations ~/HDTF/HDTF_dataset --out ~/HDTF/eval")
    dsp = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    d_ls = _sub(dsp, "ls", "list the clips of a dataset", "  kdbench data ls hdtf-mini\n  kdbench data ls ./my_set")
    d_ls.add_argument("dataset", help="built-in name (hdtf-mini, hdtf) or dataset folder")
    d_ls.set_defaults(func=cmd_data_ls)
    d_v = _sub(dsp, "verify", "check every clip as `kdbench run` will use it: files present and matching their "
                              "pinned sha256, videos and images readable, audio long enough and not silent",
               "  kdbench data verify hdtf-mini\n  kdbench data verify ~/HDTF/eval --json\n"
               "  kdbench data freeze ./my_set && kdbench data verify ./my_set")
    d_v.add_argument("dataset")
    d_v.add_argument("--json", action="store_true", help="machine-readable output")
    d_v.set_defaults(func=cmd_data_verify)
    d_f = _sub(dsp, "freeze", "pin a folder dataset's checksums: write its manifest.jsonl",
               "  kdbench data freeze ./my_set\n  kdbench data freeze ./my_set --out my_set.jsonl",
               description="Write the manifest of a folder laid out like hdtf-mini (gt/, ref/, audio/): every "
                           "file's sha256, frame counts and the frame size. From then on `kdbench data verify`, "
                           "`run` and `eval` compare the files against it.")
    d_f.add_argument("dataset", help="dataset folder")
    d_f.add_argument("--out", help="manifest path (default DATASET/manifest.jsonl)")
    d_f.add_argument("--force", action="store_true", help="overwrite an existing manifest")
    d_f.set_defaults(func=cmd_data_freeze)
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
               "  kdbench run --method kdtalker --dataset hdtf-mini --set ddim_steps=5 --limit 2\n"
               "  kdbench run --method kdtalker --dataset hdtf --device cuda --executor ray   # every GPU")
    run.add_argument("--method", required=True, help="method name (see `kdbench ls methods`)")
    run.add_argument("--dataset", default="hdtf-mini", help="built-in name or folder (default hdtf-mini)")
    run.add_argument("--out", help="run folder (default runs/<method>-<dataset>); re-running resumes it")
    run.add_argument("--limit", type=_int_at_least(1), help="only the first N clips (N >= 1)")
    run.add_argument("--seed", type=int, default=0, help="seed for every random draw (default 0)")
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default: cuda if available)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="method option, e.g. ddim_steps=5")
    run.add_argument("--warmup", type=_int_at_least(0), default=1,
                     help="untimed warm-up generations before timing (default 1)")
    _normalizer_args(run)
    run.add_argument("--overlap-writes", action="store_true",
                     help="throughput mode: encode and write clip i on a thread while clip i+1 generates (same "
                          "videos; FPS is then measured under CPU contention, so take FPS from a default run)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    _add_executor_args(run)
    run.set_defaults(func=cmd_run)

    ev = _sub(sp, "eval", "score a run folder, or any folder of <clip_id>.mp4, with the metrics",
              "  kdbench eval runs/static\n  kdbench eval runs/kdt --metrics lse,fid --set lse.protocol=full\n"
              "  kdbench eval --videos ~/sadtalker_out --dataset hdtf --metrics lse,csim --out runs/sadtalker")
    ev.add_argument("run_dir", nargs="?", help="run folder written by `kdbench run`")
    ev.add_argument("--videos", help="score this folder of <clip_id>.mp4 instead (normalised into --out first)")
    ev.add_argument("--dataset", help="dataset the --videos belong to")
    ev.add_argument("--out", help="run folder for --videos (default runs/external-<folder>)")
    ev.add_argument("--metrics", type=_metric_list,
                    help="comma-separated metric names (default: all; see `kdbench ls metrics`)")
    ev.add_argument("--set", action="append", metavar="METRIC.KEY=VALUE", help="metric option, e.g. lse.protocol=full")
    ev.add_argument("--device", default="auto", help="cpu, cuda or auto")
    _normalizer_args(ev, " (with --videos)")
    ev.add_argument("-q", "--quiet", action="store_true")
    _add_executor_args(ev)
    ev.set_defaults(func=cmd_eval)

    sw = _sub(sp, "sweep", "run and evaluate one method over several values of an option (paper Table 6 layout)",
              "  kdbench sweep --method kdtalker --set ddim_steps=1,5,10,20,50,100,200 --dataset hdtf")
    sw.add_argument("--method", required=True)
    sw.add_argument("--dataset", default="hdtf-mini")
    sw.add_argument("--set", action="append", metavar="KEY=V1,V2,...", required=True)
    sw.add_argument("--out", help="parent folder of the runs (default runs/sweep-<method>-<key>)")
    sw.add_argument("--metrics", type=_metric_list, help="comma-separated metrics (default: all)")
    sw.add_argument("--limit", type=_int_at_least(1))
    sw.add_argument("--seed", type=int, default=0)
    sw.add_argument("--device", default="auto")
    sw.add_argument("--warmup", type=_int_at_least(0), default=1)
    sw.add_argument("-q", "--quiet", action="store_true")
    sw.set_defaults(func=cmd_sweep)

    rp = _sub(sp, "reproduce", "plan and run the paper's Table 1 (and Table 6): weights, environments, runs, "
                               "evaluation, report with the paper's values",
              "  kdbench reproduce --dataset hdtf --dry-run          # the plan, what is missing, how to fix it\n"
              "  kdbench reproduce --dataset hdtf --device cuda --executor ray\n"
              "  kdbench reproduce --dataset hdtf-mini --methods real,kdtalker --metrics lse,cpbd\n"
              "  kdbench reproduce --dataset hdtf --methods kdtalker --table6   # + the DDIM sweep",
              description="Runs every Table 1 row that can run (resuming finished clips), evaluates it and writes "
                          "OUT/report with --compare-paper. Rows whose method, environment or weights are missing "
                          "are skipped with the command that fixes them; --dry-run shows the plan only.")
    rp.add_argument("--dataset", default="hdtf", help="built-in name or folder (default hdtf)")
    rp.add_argument("--out", default="runs/table1", help="parent folder of the runs and the report "
                                                         "(default runs/table1)")
    rp.add_argument("--methods", help="comma-separated rows to run (default: all of Table 1), e.g. real,kdtalker")
    rp.add_argument("--table6", action="store_true", help="also KDTalker at 1,5,10,20,50,100,200 DDIM steps")
    rp.add_argument("--metrics", help="comma-separated metrics (default: all)")
    rp.add_argument("--set", action="append", metavar="METRIC.KEY=VALUE", help="metric option")
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--device", default="auto")
    rp.add_argument("--dry-run", action="store_true", help="print the plan and what is missing; run nothing")
    rp.add_argument("--no-fetch", action="store_true", help="do not download missing weights")
    rp.add_argument("-q", "--quiet", action="store_true")
    _add_executor_args(rp)
    rp.set_defaults(func=cmd_reproduce)

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
    except BrokenPipeError:  # output piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # unwritable --out / KDBENCH_HOME, full disk, unreadable file
        print(f"error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as e:  # a JSON/JSONL file of a run folder that is not text
        print(f"error: a file is not UTF-8 text ({e.reason} at byte {e.start}); kdbench's config.json, "
              "events.jsonl, metrics.json and manifest.jsonl are UTF-8: is the folder one kdbench wrote?",
              file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a bug: exit 2 (never 1, which `kdbench check` reserves for drift)
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(f"internal error (a kdbench bug): {type(e).__name__}: {e}; re-run with -v for the traceback",
              file=sys.stderr)
        return 2


def os_error_message(e: OSError) -> str:
    """``e`` as one line naming the file, and which folder or variable to change."""
    from .weights import kdbench_home

    path = e.filename or ""
    what = e.strerror or str(e)
    msg = f"{what}: {path}" if path else what
    if not path:
        return msg
    try:
        under_home = Path(path).resolve().is_relative_to(kdbench_home().resolve())
    except (OSError, ValueError):
        under_home = False
    if under_home:
        var = (f"KDBENCH_HOME={os.environ['KDBENCH_HOME']}" if os.environ.get("KDBENCH_HOME")
               else f"the default KDBENCH_HOME ({kdbench_home()})")
        return f"{msg}. kdbench keeps weights, data and caches under {var}: set KDBENCH_HOME to a writable folder"
    if isinstance(e, PermissionError):
        return f"{msg}. Choose a folder you can write to (--out), or fix the permissions"
    return msg


if __name__ == "__main__":
    sys.exit(main())
