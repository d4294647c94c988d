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
    from .registry import METRICS

    if args.what == "methods":
        rows = _method_rows()
        if args.long:
            _print_long([{**r, "status": r["detail"]} for r in rows],
                        ["status", "fix", "paper_row", "runs", "options", "weights", "licence", "description"])
        else:
            _print_short(rows, ["name", "status", "paper_row"], "description")
            blocked = [r for r in rows if r.get("fix")]
            if blocked:
                print("\nnot ready:")
                for r in blocked:
                    print(f"  {r['name']}: {r['detail']}\n      fix: {r['fix']}")
            print("(details, options and weights: `kdbench ls methods --long`)")
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


def _method_rows() -> list[dict]:
    """One row per method for ``kdbench ls methods``: its readiness (:mod:`kdbench.readiness`, the one ``run``
    and ``reproduce`` use: ``status`` short, ``detail`` whole, ``fix`` the command) and what ``--long`` shows."""
    from .readiness import method_readiness
    from .registry import METHODS
    from .runtime.spec import SPECS, get_spec
    from .weights import WeightsManager

    weights = WeightsManager()
    rows = []
    for n in METHODS.names():
        ready = method_readiness(n, weights)
        row = {"name": n, "status": ready.status.split(":")[0], "detail": ready.status, "fix": ready.fix}
        try:
            cls = METHODS.get(n)
        except Exception as e:  # noqa: BLE001 - a broken plugin is listed, not fatal
            rows.append({**row, "description": f"(cannot load: {e})"})
            continue
        info = cls.info
        row.update(paper_row=info.paper_row or "", description=info.description,
                   options=", ".join(f"{k}={v}" for k, v in cls.default_options.items()) or "none")
        if n in SPECS:
            spec = get_spec(n)
            row.update(runs=f"upstream code {spec.repo}@{spec.commit[:12]} in $KDBENCH_HOME/methods/{n} "
                            f"(`kdbench setup {n}`)", weights=", ".join(spec.weights), licence=spec.licence)
        else:
            row.update(runs="in this process (native)", weights=", ".join(info.weights) or "none")
        rows.append(row)
    return rows


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
        for w in rep.warnings:
            print(f"WARNING: {w}")
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

    if args.trust_unpinned:  # read by the baseline workers (kdbench.runtime.compat); recorded in env.json
        os.environ["KDBENCH_TRUST_UNPINNED"] = "1"
    ds = load_dataset(args.dataset)
    out = Path(args.out or f"runs/{args.method}-{ds.name}")
    s = run_method(args.method, ds, out, options=parse_sets(args.set), seed=args.seed, device=args.device,
                   limit=args.limit, warmup=args.warmup, frame_size=args.frame_size, grid=args.grid,
                   max_pad_frames=args.max_pad_frames, letterbox=args.letterbox, progress=not args.quiet,
                   overlap_writes=args.overlap_writes, keep_generated=args.keep_generated, **_executor_kwargs(args))
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
    n = doc['dataset']['n_clips']
    print(f"{doc['run']['method']} on {doc['dataset']['name']} ({n} clip{'' if n == 1 else 's'}, "
          f"manifest_id {doc['dataset']['manifest_id']})")
    for name, m in doc["metrics"].items():
        if m["status"] != "ok":
            print(f"  {name:13s} {m['status']}: {m.get('skip_reason')}")
            continue
        if name == "fps" and doc["run"].get("copies_input"):
            print(f"  {name:13s} not shown: {doc['run']['method']} copies its input instead of generating, so its "
                  "FPS would time a file copy (reports leave it out too)")
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
    from reports.sweep_table import sweep_markdown, sweep_table

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
    res = reproduce(args.dataset, args.out, methods=methods, table6=args.table6, metrics=args.metrics,
                    sets=parse_sets(args.set), set_args=list(args.set or []), seed=args.seed,
                    device=resolve_device(args.device), dry_run=args.dry_run, fetch=not args.no_fetch,
                    progress=not args.quiet, strict=args.strict, announce=lambda text: print(f"{text}\n", flush=True),
                    **_executor_kwargs(args))
    if args.dry_run:
        print(res["plan"])
        if res["exit"]:
            print("--strict: some rows are not ready (see above)", file=sys.stderr)
        return res["exit"]
    if res["plan_after"] is None:  # --strict refused to start
        print(f"--strict: nothing was run: {len(res['skipped'])} row(s) not ready: {', '.join(res['skipped'])}",
              file=sys.stderr)
        return res["exit"]
    print(f"after the run:\n{res['plan_after']}")
    for row, (why, fix) in res["skipped"].items():
        print(f"skipped {row}: {why}" + (f"\n    fix: {fix}" if fix else ""))
    if res["table"]:
        print(f"\n{res['table']}")
    files, report = [p for p in res["written"] if p.is_file()], res["report"]
    if report:
        inner = [p for p in files if p.is_relative_to(report)]
        top = [p.name for p in inner if p.parent == report]
        more = len(inner) - len(top)
        print(f"wrote {report}/: {', '.join(top)}" + (f" and {more} more (figures, gallery)" if more else ""))
    for p in files:
        if not report or not p.is_relative_to(report):
            print(f"wrote {p}")
    if not files:
        print("no report: no row ran")
    return res["exit"]


_TRUST_LABEL = {"pinned": "ok", "tofu": "tofu", "unverified": "UNVERIFIED"}


# --- setup ----------------------------------------------------------------------------------------------
def cmd_setup(args) -> int:
    from .runtime.setup import setup_method
    from .runtime.spec import get_spec

    spec = get_spec(args.method)
    rec = setup_method(spec, source=args.source, python=args.python, share=args.share_site,
                       installer=args.installer, fetch_weights=not args.no_weights, progress=not args.quiet,
                       pytorch3d_source=args.pytorch3d_source)
    print(f"{spec.name}: {spec.repo}@{rec['source']['commit'][:12]} ({rec['source']['kind']}, "
          f"{'verified' if rec['source']['verified'] else 'unverified'}), Python {rec['python']}, "
          f"{len(rec['packages'])} packages, {len(rec['weights'])} weight files linked, in {rec['seconds']} s")
    if rec["source"].get("problem"):
        print(f"  source unverified: {rec['source']['problem']}")
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
        return _weights_ls(wm, args.long)
    if args.action == "verify" and not args.names:
        return _weights_verify_all(wm)
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


def _size_text(n: int | None) -> str:
    return "-" if not n else f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n} B"


def _weights_ls(wm, long: bool) -> int:
    """``kdbench weights ls``: per entry pin kind (strength), revision, size, licence; counts by trust at the end."""
    rows = wm.status()
    for r in rows:
        r["present"] = "yes" if r["present"] else "no"
        r["size"] = _size_text(r["size"])
        r["licence"] = r.pop("license")
    if long:
        _print_long(rows, ["present", "used_by", "pin", "checksum", "pin_source", "source", "revision", "size",
                           "licence", "path"])
    else:
        _print_table(rows, ["name", "present", "used_by", "pin", "revision", "size", "licence"])
    counts = {k: sum(r["trust"] == k for r in rows) for k in ("pinned", "tofu")}
    weak = ", ".join(r["name"] for r in rows if r["pin"].endswith(("(low)", "(ambiguous)")))
    print(f"{len(rows)} entries: {counts['pinned']} pinned to a published checksum, {counts['tofu']} trusted on first "
          f"use (tofu)" + (f"; low confidence or ambiguous pins: {weak}" if weak else ""))
    print(f"cache: {wm.home / 'weights'}")
    print("pin: sha256 / git-blob = a checksum of the upstream file (official = the official repository's own LFS "
          "pointer or blob, mirror = mirrors' pointers or download scripts, low / ambiguous: see `weights ls --long`); "
          "sha256-prefix = only its first hex digits are known; tofu = nothing published: the sha256 seen at first "
          "use is pinned and results record it as trust: tofu, verified: false. Baseline workers unpickle fully "
          "only files matching a whole published checksum (docs/security.md)")
    return 0


def _optional_weights(method: str) -> tuple[str, ...]:
    """Weights a baseline needs only for some options (its spec's ``optional_weights``); () for anything else."""
    from .runtime.spec import SPECS, get_spec

    return get_spec(method).optional_weights if method in SPECS else ()


def _weights_verify_all(wm) -> int:
    """``kdbench weights verify`` without names: every present file re-hashed, grouped by what uses it; what is
    missing is said once per method or metric, with the command that fetches it. Exit 1 only when a present file
    fails its pin."""
    from .errors import WeightsMissing

    groups: dict[str, list[str]] = {}
    for name, e in sorted(wm.entries.items()):
        for user in e.used_by or ("(unused)",):
            groups.setdefault(user, []).append(name)
    bad, done = 0, {}
    for user, names in sorted(groups.items()):
        lines, missing = [], []
        for n in names:
            if n not in done:
                try:
                    rec = wm.verify(n)
                    done[n] = f"{_TRUST_LABEL[rec['trust']]:8s} {n}" + (f": {rec['problem']}" if rec.get("problem")
                                                                          else "")
                    bad += rec["trust"] == "unverified"
                except WeightsMissing:
                    done[n] = None
                except KdbenchError as ex:
                    done[n] = f"FAILED   {n}: {ex}"
                    bad += 1
            if done[n] is None:
                missing.append(n)
            else:
                lines.append(done[n])
        print(f"{user}:")
        for line in lines:
            print(f"  {line}")
        optional = [n for n in missing if n in _optional_weights(user)]
        needed = [n for n in missing if n not in optional]
        if needed:
            print(f"  not fetched ({len(needed)}), needed for {user}: `kdbench weights fetch {' '.join(needed)}`")
        if optional:
            print(f"  not fetched ({len(optional)}), needed only for some {user} options (see the README):"
                  f" `kdbench weights fetch {' '.join(optional)}`")
    print("FAILED: a present file differs from its pin (delete it and fetch it again)" if bad else
          "no present file is corrupt (missing files are only needed by the methods and metrics named above)")
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
    d_p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
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
                     help="untimed warm-up generations of the first clip before timing (default 1; recorded in "
                          "env.json). A whole clip: on a CPU, or when FPS does not matter, use --warmup 0")
    run.add_argument("--trust-unpinned", action="store_true",
                     help="let a baseline worker unpickle fully a checkpoint that matches no published pin (tofu or "
                          "unverified) and holds more than tensors: this runs code from that file. Same as "
                          "KDBENCH_TRUST_UNPINNED=1; recorded in env.json and the report")
    _normalizer_args(run)
    run.add_argument("--overlap-writes", action="store_true",
                     help="throughput mode: encode and write clip i on a thread while clip i+1 generates (same "
                          "videos; FPS is then measured under CPU contention, so take FPS from a default run)")
    run.add_argument("--keep-generated", action="store_true",
                     help="also keep each clip's output as the method handed it to the normaliser, losslessly, in "
                          "OUT/generated/ (a baseline worker's FFV1 video, or a native method's frames as .npy): "
                          "what an equality check against the official script compares, before the lossy encode. "
                          "Large (about 100 MB per 8 s clip at 512x512); local executor only")
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
    ev.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    _add_executor_args(ev)
    ev.set_defaults(func=cmd_eval)

    sw = _sub(sp, "sweep", "run and evaluate one method over several values of an option (paper Table 6 layout)",
              "  kdbench sweep --method kdtalker --set ddim_steps=1,5,10,20,50,100,200 --dataset hdtf")
    sw.add_argument("--method", required=True, help="method name (see `kdbench ls methods`)")
    sw.add_argument("--dataset", default="hdtf-mini", help="built-in name or folder (default hdtf-mini)")
    sw.add_argument("--set", action="append", metavar="KEY=V1,V2,...", required=True,
                    help="method option: exactly one --set with several comma-separated values (the swept one, "
                         "one run each); others with one value are fixed for every run")
    sw.add_argument("--out", help="parent folder of the runs, one KEY=VALUE folder each, plus sweep.md and "
                                  "sweep.csv (default runs/sweep-<method>-<key>); re-running resumes them")
    sw.add_argument("--metrics", type=_metric_list, help="comma-separated metrics (default: all)")
    sw.add_argument("--limit", type=_int_at_least(1), help="only the first N clips (N >= 1)")
    sw.add_argument("--seed", type=int, default=0, help="seed for every random draw, the same in every run "
                                                        "(default 0)")
    sw.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default: cuda if available)")
    sw.add_argument("--warmup", type=_int_at_least(0), default=1,
                    help="untimed warm-up generations before timing, per run (default 1)")
    sw.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sw.set_defaults(func=cmd_sweep)

    from .reproduce import EXIT_CODES

    rp = _sub(sp, "reproduce", "plan and run the paper's Table 1 (and Table 6): weights, environments, runs, "
                               "evaluation, report with the paper's values",
              "  kdbench reproduce --dataset hdtf --dry-run          # the plan, what is missing, how to fix it\n"
              "  kdbench reproduce --dataset hdtf --device cuda --executor ray\n"
              "  kdbench reproduce --dataset hdtf-mini --methods real,kdtalker --metrics lse,cpbd\n"
              "  kdbench reproduce --dataset hdtf --methods kdtalker --table6   # + the DDIM sweep",
              description="Runs every Table 1 row that is ready (resuming finished clips), evaluates it and writes "
                          "OUT/report (table1.md: Table 1 with the paper's values; report.html, table.md, …). A row "
                          "whose method, environment or weights are missing (the status of `kdbench ls methods`) "
                          "is skipped with the command that fixes it, gets no run folder, and is footnoted in the "
                          "report; --strict runs nothing unless every row is ready. --dry-run shows the plan: per "
                          "row its status and the exact `kdbench run` / `kdbench eval` commands, or what is "
                          "missing and the fix.\n\nexit codes:\n" + "\n".join(
                              f"  {code}  {what}" for code, what in sorted(EXIT_CODES.items())))
    rp.add_argument("--dataset", default="hdtf", help="built-in name or folder (default hdtf)")
    rp.add_argument("--out", default="runs/table1", help="parent folder of the runs and the report "
                                                         "(default runs/table1)")
    rp.add_argument("--methods", help="comma-separated rows to run (default: all of Table 1), e.g. real,kdtalker")
    rp.add_argument("--table6", action="store_true", help="also KDTalker at 1,5,10,20,50,100,200 DDIM steps")
    rp.add_argument("--metrics", type=_metric_list, help="comma-separated metrics (default: all)")
    rp.add_argument("--set", action="append", metavar="METRIC.KEY=VALUE", help="metric option")
    rp.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
    rp.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default: cuda if available)")
    rp.add_argument("--dry-run", action="store_true", help="print the plan and what is missing; run nothing")
    rp.add_argument("--no-fetch", action="store_true", help="do not download missing weights")
    rp.add_argument("--strict", action="store_true", help="run nothing unless every row is ready (exit 1)")
    rp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
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
              "  kdbench setup sadtalker --python /usr/bin/python3.11 --share-site /opt/torch/site-packages\n"
              "  kdbench setup real3dportrait --pytorch3d-source ~/src/pytorch3d   # compiles its rasterizer once",
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
    st.add_argument("--pytorch3d-source", metavar="DIR", help="methods that compile pytorch3d's rasterizer "
                    "(real3dportrait): a local clone of facebookresearch/pytorch3d (or its v0.7.9 tree) instead of "
                    "downloading GitHub's archive; the build is cached per torch/CUDA/Python")
    st.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    st.set_defaults(func=cmd_setup)

    w = _sub(sp, "weights", "list, fetch, verify and locate model weights",
             "  kdbench weights ls                     # pin (kind, strength), revision, size, licence; counts\n"
             "  kdbench weights ls --long              # plus the checksum and where the pin comes from\n"
             "  kdbench weights fetch syncnet_v2 sfd_face\n"
             "  kdbench weights verify                 # every present file, grouped by method; exit 1 only if "
             "one is corrupt\n"
             "  kdbench weights path pt_inception")
    w.add_argument("action", choices=["ls", "fetch", "verify", "path"])
    w.add_argument("names", nargs="*", help="weight names (default for fetch/verify: all)")
    w.add_argument("--long", action="store_true", help="ls: every detail (checksum, where the pin comes from, source)")
    w.add_argument("-q", "--quiet", action="store_true", help="no download progress bars")
    w.set_defaults(func=cmd_weights)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from .interrupt import EXIT_SIGTERM, handled, terminated

    try:
        with handled():  # SIGTERM as SIGINT: worker processes ended, then KeyboardInterrupt below
            return int(args.func(args) or 0)
    except KdbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if terminated():
            print("terminated (SIGTERM): finished clips are kept; re-run the same command to resume", file=sys.stderr)
            return EXIT_SIGTERM
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
