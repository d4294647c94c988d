"""A weights mirror for tests: random weights in the official formats, served from a loopback HTTP server.

The real checkpoints cannot be downloaded in CI. :func:`build_mirror` writes stand-ins with the official
containers, key names and shapes (the same ones the metric tests load), laid out as
``KDBENCH_WEIGHTS_MIRROR`` expects (``<root>/<name>/<file>``), plus a manifest pinning *their* sha256
(``KDBENCH_WEIGHTS_MANIFEST``); :func:`serve` serves that folder on 127.0.0.1 only, and stops by itself
after ``max_seconds`` even if a test hangs. Nothing here is a real weight: numbers scored with these
files are plumbing checks, not measurements.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

from kdbench.weights import MANIFEST, load_manifest

METRIC_WEIGHTS = ("syncnet_v2", "sfd_face", "hopenet_robust_alpha1", "pt_inception", "buffalo_l")
OTHER_WEIGHTS = ("i3d_torchscript",)


def _write(name: str, path: Path, seed: int) -> None:
    import torch

    if name in ("syncnet_v2", "sfd_face"):
        from tests import lse_fixtures as fx

        state = fx.random_syncnet_state(seed) if name == "syncnet_v2" else fx.random_s3fd_state(seed)
        fx.save_state(state, path)
    elif name == "hopenet_robust_alpha1":
        from metrics.hopenet_net import Hopenet
        from tests.test_diversity import official_format_state, randomise_bn

        torch.manual_seed(seed)
        model = Hopenet().eval()
        randomise_bn(model, seed + 1)
        torch.save(official_format_state(model), path, _use_new_zipfile_serialization=False)
    elif name == "pt_inception":
        from tests.test_fid import random_fid_state_dict

        torch.save(random_fid_state_dict(seed), path)
    elif name == "buffalo_l":
        from tests import csim_fakes

        pack = csim_fakes.fake_pack(path.parent / "pack", seed=seed)
        csim_fakes.fake_pack_zip(pack, path)
    elif name == "i3d_torchscript":
        from tests.test_fvd import i3d_module

        i3d_module().save_random_i3d(path, 1 / 16, seed, 64)  # tiny: the torchscript's interface, CPU-fast
    else:
        raise ValueError(f"no random stand-in for weights {name!r}")


def build_mirror(root: Path, names: tuple[str, ...] = METRIC_WEIGHTS + OTHER_WEIGHTS,
                 seed: int = 0) -> tuple[Path, dict[str, str]]:
    """Write ``root/<name>/<file>`` for each name and ``root/weights.toml`` pinning their sha256.

    Returns (manifest path, {name: sha256}). Entries not in ``names`` keep the built-in manifest's values.
    """
    entries = load_manifest(MANIFEST)
    pins = {}
    for name in names:
        path = root / name / entries[name].file
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(name, path, seed)
        pins[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    lines = ["# test manifest: the built-in entries, with the sha256 of the mirror's random stand-ins"]
    for name, e in entries.items():
        lines.append(f"[{name}]")
        fields = {"file": e.file, "url": e.url, "gdrive": e.gdrive, "hf_repo": e.hf_repo, "hf_file": e.hf_file,
                  "package": e.package, "resource": e.resource, "license": e.license}
        if name in pins:
            fields["sha256"] = pins[name]
        else:
            fields.update(sha256=e.sha256, sha256_prefix=e.sha256_prefix, git_sha1=e.git_sha1)
        lines += [f"{k} = {json.dumps(v)}" for k, v in fields.items() if v]
        if e.extract:
            lines.append("extract = true")
        lines.append("used_by = [" + ", ".join(f'"{u}"' for u in e.used_by) + "]")
    manifest = root / "weights.toml"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, pins


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@contextlib.contextmanager
def serve(root: Path, max_seconds: float = 300.0) -> Iterator[str]:
    """Serve ``root`` at ``http://127.0.0.1:<free port>/`` (yielded); shut down on exit or after ``max_seconds``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    watchdog = threading.Timer(max_seconds, server.shutdown)
    watchdog.daemon = True
    thread.start()
    watchdog.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        watchdog.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
