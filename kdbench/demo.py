"""``make demo``: the main job on the embedded hdtf-mini sample, ending with the paper-style table.

    python -m kdbench.demo --out demo_out             # what `make demo` runs
    python -m kdbench.demo --offline                  # never download (same as KDBENCH_OFFLINE=1)

1. verify hdtf-mini;
2. online (a weights source answers within a few seconds, ``KDBENCH_OFFLINE`` unset), fetch the public metric
   weights that are not cached yet through the weights manager (:data:`METRIC_WEIGHTS`: SyncNet, S3FD,
   Hopenet, FID Inception, buffalo_l; progress bars, checksums as pinned in ``weights.toml``), after one line
   with the total download size; offline, go on with what is there;
3. run ``real`` and ``static`` on hdtf-mini, and ``kdtalker`` when a CUDA GPU is present and its weights could
   be fetched (on a CPU it is too slow for a demo: the command is printed instead);
4. score every run with every metric (metrics whose weights are missing are listed as skipped), using the
   explicit demo options of :func:`demo_options` — printed with the table, and saved next to it, so a demo
   number is never taken for the protocol's;
5. write the report (``OUT/report``) and print its table; offline, the last line says how to get the full table.

Downloads go wherever the weights manager sends them: ``KDBENCH_WEIGHTS_MIRROR`` and
``KDBENCH_WEIGHTS_MANIFEST`` (see :mod:`kdbench.weights`) point the demo at a mirror, as the tests do.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import KdbenchError
from .weights import WeightEntry, WeightsManager, mirror_url

#: public weights of the network metrics, and the metric each enables
METRIC_WEIGHTS: dict[str, str] = {
    "syncnet_v2": "LSE-C/D",
    "sfd_face": "LSE-C/D",
    "hopenet_robust_alpha1": "Diversity",
    "pt_inception": "FID",
    "buffalo_l": "CSIM",
}
#: public weights of the metrics whose outputs are not in KDTalker's Table 1 (the report's "other outputs")
OTHER_WEIGHTS: dict[str, str] = {"i3d_torchscript": "FVD"}
#: everything ``kdbench run --method kdtalker`` loads besides the packaged dlib landmark model
KDTALKER_WEIGHTS: tuple[str, ...] = ("kdtalker", "kdtalker_norm", "wav2lip", "liveportrait_appearance",
                                     "liveportrait_motion", "liveportrait_warping", "liveportrait_spade")
PROBE_TIMEOUT_S = 4.0


@dataclass(frozen=True)
class DemoOption:
    """One metric option the demo sets to stay short, with the protocol's value and why."""

    key: str  # "<metric>.<option>", as for `kdbench eval --set`
    value: Any
    protocol: Any
    why: str

    @property
    def set_arg(self) -> str:
        return f"{self.key}={self.value}"


def demo_options(device: str) -> list[DemoOption]:
    """The metric options of this demo run on ``device`` ("cpu" or "cuda...")."""
    opts = [DemoOption("diversity.max_frames", 8, 200,
                       "dlib's CNN face detector (CPU only) takes seconds per 512x512 frame")]
    if not device.startswith("cuda"):
        opts += [
            DemoOption("fid.stride", 5, 1, "Inception on every 5th frame (about 6 frames/s on 2 CPU cores)"),
            DemoOption("csim.frame_stride", 5, 1, "ArcFace on every 5th frame"),
        ]
    return opts


def options_block(opts: list[DemoOption]) -> str:
    """Markdown lines listing the demo options against the protocol's values."""
    if not opts:
        return "Demo options: none (every metric ran with its protocol defaults)."
    lines = ["Demo options (shorter than the paper's protocol; these numbers are demo numbers, not the "
             "protocol's):", ""]
    lines += [f"- `--set {o.set_arg}` (protocol: {o.key.split('.', 1)[1]}={o.protocol}): {o.why}" for o in opts]
    lines += ["", "Protocol numbers: `kdbench eval RUN_DIR` without these `--set` (on a GPU for speed)."]
    return "\n".join(lines)


# --- is a weights source reachable, and how big are the files? ----------------------------------------
def download_url_of(e: WeightEntry) -> str | None:
    """The URL a fetch of ``e`` starts from (the mirror's when one is set); None for packaged files."""
    if e.package:
        return None
    if m := mirror_url(e):
        return m
    if e.url:
        return e.url
    if e.hf_repo:
        return f"https://huggingface.co/{e.hf_repo}/resolve/main/{e.hf_file}"
    if e.gdrive:
        return f"https://drive.google.com/uc?id={e.gdrive}&export=download"
    return None


@dataclass
class Probe:
    name: str
    url: str | None
    reachable: bool = False
    size: int | None = None  # bytes, from Content-Length; None when the server does not say
    error: str = ""


def _head(p: Probe, timeout: float) -> None:
    req = urllib.request.Request(str(p.url), method="HEAD", headers={"User-Agent": "kdbench"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            p.reachable = True
            n = r.headers.get("Content-Length")
            # Google Drive answers a HEAD with an HTML page, not the file
            p.size = int(n) if n and "drive.google.com" not in str(p.url) else None
    except urllib.error.HTTPError as ex:  # the server answered: online, but no size
        p.reachable, p.error = True, f"HTTP {ex.code}"
    except Exception as ex:  # noqa: BLE001 - DNS, refused, timeout: this source is not reachable
        p.error = f"{type(ex).__name__}: {getattr(ex, 'reason', ex)}"


def probe_sources(entries: list[WeightEntry], timeout: float = PROBE_TIMEOUT_S) -> list[Probe]:
    """HEAD every entry's download URL in parallel; bounded by ``timeout`` + 1 s even if DNS hangs."""
    probes = [Probe(e.name, download_url_of(e)) for e in entries]
    threads = [threading.Thread(target=_head, args=(p, timeout), daemon=True) for p in probes if p.url]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 1.0)
    for p in probes:
        if p.url and not p.reachable and not p.error:
            p.error = f"no answer within {timeout:g} s"
    return probes


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def size_note(probes: list[Probe]) -> str:
    known = [p.size for p in probes if p.size is not None]
    unknown = [p.name for p in probes if p.size is None]
    s = human_size(sum(known)) if known else "size unknown"
    if unknown and known:
        s += f" + {', '.join(unknown)} (size not announced by the server)"
    return s


def offline_reason() -> str | None:
    """Why nothing will be downloaded (``KDBENCH_OFFLINE=1``), or None."""
    if os.environ.get("KDBENCH_OFFLINE") == "1":
        return "KDBENCH_OFFLINE=1"
    return None


def fetch_missing(wm: WeightsManager, names: list[str], what: str, progress: bool,
                  offline: str | None = None) -> tuple[list[str], str | None]:
    """Fetch the ``names`` not available yet. Returns (names now available, why offline or None).

    Online means at least one of the missing files' sources answered a HEAD request; then one line gives
    the total size, every file is fetched (checksum-verified by the weights manager) and failures are
    printed and skipped. Offline (``offline`` names why, or ``KDBENCH_OFFLINE=1``), nothing is downloaded.
    """
    missing = [n for n in names if not wm.available(n)]
    if not missing:
        print(f"weights for {what}: all {len(names)} cached")
        return list(names), None
    why = offline or offline_reason()
    if why is None:
        probes = probe_sources([wm.entry(n) for n in missing])
        if not any(p.reachable for p in probes):
            first = probes[0]
            why = f"no weights source answered; {first.url}: {first.error}"
    if why:
        print(f"weights for {what}: {len(missing)} of {len(names)} missing, not downloading ({why})")
        return [n for n in names if n not in missing], why
    print(f"weights for {what}: downloading {len(missing)} files, {size_note(probes)}, into "
          f"{wm.home / 'weights'} (checksums as pinned in the manifest)")
    for n in missing:
        try:
            wm.fetch(n, progress=progress)
        except KdbenchError as ex:
            print(f"  {n}: not fetched: {ex}")
    return [n for n in names if wm.available(n)], None


# --- the demo ---------------------------------------------------------------------------------------------
def _kdb(*argv: str) -> int:
    """Run one ``kdbench`` command in this process, echoing it and its wall time."""
    from .cli import main

    print("$ kdbench " + " ".join(argv), flush=True)
    t0 = time.perf_counter()
    rc = main(list(argv))
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return rc


def _check(rc: int, step: str) -> None:
    if rc != 0:
        raise SystemExit(f"demo: `{step}` failed (exit {rc}); see the messages above")


def kdtalker_commands(dataset: str, out: Path) -> str:
    run = out / "runs" / "kdtalker"
    return (f"kdbench weights fetch {' '.join(KDTALKER_WEIGHTS)}\n"
            f"  kdbench run --method kdtalker --dataset {dataset} --device cuda --out {run}\n"
            f"  kdbench eval {run}")


def main_table(path: Path) -> str:
    """The main (Table 1) part of the report's ``table.md``: up to its paper comparison / extra outputs."""
    if not path.is_file():
        return f"(no {path.name} written)"
    lines = path.read_text().splitlines()
    cut = next((i for i, line in enumerate(lines[1:], 1)
                if line.startswith(("**Comparison with the paper", "**Outputs not in"))), len(lines))
    return "\n".join(lines[:cut]).rstrip() + f"\n\n(full tables: {path})"


def fvd_line(out: Path, methods: list[str]) -> str:
    """One line with each run's FVD (an output not in the paper's table), or ``—`` and how to get it."""
    import json

    parts, why = [], ""
    for m in methods:
        try:
            entry = json.loads((out / "runs" / m / "metrics.json").read_text())["metrics"].get("fvd") or {}
        except (OSError, ValueError):
            entry = {}
        value = ((entry.get("aggregate") or {}).get("fvd") or {}).get("mean")
        parts.append(f"{m} {value:.3f}" if isinstance(value, (int, float)) else f"{m} —")
        if value is None and not why:
            why = entry.get("skip_reason") or entry.get("error") or "not evaluated"
    line = "FVD (StyleGAN-V protocol, other outputs of the report, not in the paper's table): " + ", ".join(parts)
    return line + (f" ({why})" if why else "")


def run_demo(out: Path, dataset: str = "hdtf-mini", device: str = "auto", kdtalker: str = "auto",
             offline: bool = False, extra_sets: list[str] | None = None, progress: bool = True) -> int:
    """Everything ``make demo`` does; returns the exit status."""
    from .envinfo import resolve_device

    forced = "--offline" if offline else None
    device = resolve_device(device)
    quiet = [] if progress else ["-q"]
    print(f"== dataset ({dataset})", flush=True)
    _check(_kdb("data", "verify", dataset), "data verify")

    print("== weights", flush=True)
    wm = WeightsManager()
    have, offline_why = fetch_missing(wm, list(METRIC_WEIGHTS), "the network metrics", progress, forced)
    fetch_missing(wm, list(OTHER_WEIGHTS), "FVD (not in the paper's table)", progress, forced or offline_why)
    methods = ["real", "static"]
    kdt_note = ""
    want_kdt = kdtalker == "yes" or (kdtalker == "auto" and device.startswith("cuda"))
    if want_kdt:
        got, why = fetch_missing(wm, list(KDTALKER_WEIGHTS), "KDTalker", progress, forced)
        if len(got) == len(KDTALKER_WEIGHTS):
            methods.append("kdtalker")
        else:
            lacking = [n for n in KDTALKER_WEIGHTS if n not in got]
            kdt_note = (f"KDTalker not run: weights {', '.join(lacking)} missing"
                        f"{f' ({why})' if why else ''}. With a network:\n  {kdtalker_commands(dataset, out)}")
    elif kdtalker == "auto":
        kdt_note = ("KDTalker not run: no CUDA GPU here, and on a CPU its LivePortrait renderer takes seconds per "
                    "512x512 frame (minutes per clip), too slow for a demo. On a GPU machine `make demo` runs it; "
                    f"by hand:\n  {kdtalker_commands(dataset, out)}")

    for m in list(methods):
        print(f"== run {m}", flush=True)
        dev = ["--device", device] if m == "kdtalker" else []
        rc = _kdb("run", "--method", m, "--dataset", dataset, "--out", str(out / "runs" / m), *dev, *quiet)
        if rc != 0 and m == "kdtalker":  # the baselines' table is still worth having
            methods.remove(m)
            kdt_note = f"KDTalker's run failed (exit {rc}; messages above), so it has no row. Retry by hand:\n  " \
                       + kdtalker_commands(dataset, out)
        else:
            _check(rc, f"run {m}")
    extra_keys = {s.split("=", 1)[0] for s in extra_sets or []}
    opts = [o for o in demo_options(device) if o.key not in extra_keys]  # an explicit --set wins
    sets = [o.set_arg for o in opts] + list(extra_sets or [])
    for m in methods:
        print(f"== eval {m}", flush=True)
        set_args = [a for s in sets for a in ("--set", s)]
        _check(_kdb("eval", str(out / "runs" / m), "--device", device, *set_args, *quiet), f"eval {m}")
    print("== report", flush=True)
    report = out / "report"
    _check(_kdb("report", *(str(out / "runs" / m) for m in methods), "--out", str(report), "--compare-paper"),
           "report")

    block = options_block(opts)
    if extra_sets:
        block += "\n\nAlso set for this run: " + " ".join(f"`--set {s}`" for s in extra_sets)
    (report / "demo_options.md").write_text(block + "\n")
    table = main_table(report / "table.md")
    print(f"\n{table.rstrip()}\n\n{block}\n")
    print(fvd_line(out, methods) + "\n")
    if kdt_note:
        print(kdt_note + "\n")
    print(f"report: {report} (table.md, table.tex, table.csv, report.html, figures/, demo_options.md)")
    lacking = [n for n in METRIC_WEIGHTS if n not in have]
    if lacking:
        metrics = sorted({METRIC_WEIGHTS[n] for n in lacking})
        if offline_why is None:  # online, but a download failed (its error is printed above)
            how = "fix the download error printed above and re-run `make demo`"
        else:
            how = {"KDBENCH_OFFLINE=1": "unset KDBENCH_OFFLINE and re-run `make demo`",
                   "--offline": "re-run without --offline"}.get(offline_why, "re-run `make demo` with a network")
        print(f"Not the full table: {', '.join(metrics)} skipped ({offline_why or 'download failed'}). "
              f"For the full table, {how}, or first `kdbench weights fetch {' '.join(lacking)}`.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kdbench.demo", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run real and static (and KDTalker on a CUDA GPU) on hdtf-mini, fetch the public metric weights "
                    "when online, score every metric and print the paper-style table.",
        epilog="examples:\n  python -m kdbench.demo --out demo_out\n  KDBENCH_OFFLINE=1 python -m kdbench.demo\n"
               "  python -m kdbench.demo --kdtalker no --set lse.protocol=full")
    p.add_argument("--out", default="demo_out", help="output folder (runs/ and report/; default demo_out)")
    p.add_argument("--dataset", default="hdtf-mini", help="dataset name or folder (default hdtf-mini)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda if available)")
    p.add_argument("--kdtalker", choices=("auto", "yes", "no"), default="auto",
                   help="run KDTalker: auto = only on a CUDA GPU (default); yes = also on a CPU (slow)")
    p.add_argument("--offline", action="store_true", help="download nothing (same as KDBENCH_OFFLINE=1)")
    p.add_argument("--set", action="append", default=[], metavar="METRIC.KEY=VALUE",
                   help="extra metric option for every eval, printed with the table (e.g. lse.protocol=full)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_demo(Path(args.out), dataset=args.dataset, device=args.device, kdtalker=args.kdtalker,
                        offline=args.offline, extra_sets=args.set, progress=not args.quiet)
    except KdbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
