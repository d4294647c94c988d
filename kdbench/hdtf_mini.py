"""The built-in ``hdtf-mini`` dataset: real HDTF material, found locally or downloaded with pinned sha256.

Looked up in this order: ``$KDBENCH_DATA/hdtf-mini``, ``<repo>/../shared/data/hdtf-mini`` (the
project's shared data), then ``$KDBENCH_HOME/data/hdtf-mini`` — which is filled from the public
upstream repositories (SadTalker and KDTalker examples) on first use, every file checked by sha256.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DatasetError

_SADTALKER = "https://raw.githubusercontent.com/OpenTalker/SadTalker/cd4c0465ae0b54a6f85af57f5c65fec9fe23e7f8/examples"
_KDTALKER = "https://raw.githubusercontent.com/chaolongy/KDTalker/f78bf4c9c48d5ee639f45249be86977f7ef5a8dd/example"

# relative path -> (upstream URL, sha256)
FILES: dict[str, tuple[str, str]] = {
    "gt/WDA_KatieHill_000.mp4": (f"{_SADTALKER}/ref_video/WDA_KatieHill_000.mp4",
                                 "1fbb4cfd64eedc49b170c441714a9c4fd5e2c2f8a11592070ad89fbd257f2817"),
    "ref/WDA_BenCardin1_000.png": (f"{_KDTALKER}/source_image/WDA_BenCardin1_000.png",
                                   "bfce30c119f762955b7b3fb5ac21053c51d01a50b33838d384aa5a16c0077ea5"),
    "ref/WRA_MarkwayneMullin_000.png": (f"{_KDTALKER}/source_image/WRA_MarkwayneMullin_000.png",
                                        "bda4d4c222ffe1e65a2b057d33382e508a6e5704fef251cd715a136dd278dc07"),
    "ref/WRA_MikeJohanns1_000.png": (f"{_KDTALKER}/source_image/WRA_MikeJohanns1_000.png",
                                     "9d9b791f3122b69cda559dae7b389a264055b2b98538edaae1369732713c691f"),
    "audio/WDA_BenCardin1_000.wav": (f"{_KDTALKER}/audio_driven/WDA_BenCardin1_000.wav",
                                     "46cba9e5aa26d94ce13ff5eeef3e40e8086337e07f6c3d553497ea1b9f8a5e23"),
    "audio/WRA_MarkwayneMullin_000.wav": (f"{_KDTALKER}/audio_driven/WRA_MarkwayneMullin_000.wav",
                                          "791104d8663ca5af3d11dde1c042cf3f42957c6356c044d6bd8b8ee311442fc5"),
    "audio/WRA_MikeJohanns1_000.wav": (f"{_KDTALKER}/audio_driven/WRA_MikeJohanns1_000.wav",
                                       "e9fc02acff776d4bd59bad02fbb773d1201948616e279ffc853b83753f4f4f2b"),
}


def _shared_root() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "hdtf-mini"


def hdtf_mini_root(download: bool = True) -> Path:
    """Folder holding hdtf-mini (``gt/``, ``ref/``, ``audio/``)."""
    candidates = []
    if os.environ.get("KDBENCH_DATA"):  # the folder that contains hdtf-mini/, or hdtf-mini/ itself
        env = Path(os.environ["KDBENCH_DATA"]).expanduser()
        candidates += [env / "hdtf-mini", env]
    candidates.append(_shared_root())
    from .home import kdbench_home

    cache = kdbench_home() / "data" / "hdtf-mini"
    candidates.append(cache)
    for c in candidates:
        if all((c / rel).is_file() for rel in FILES):
            return c
    if not download or os.environ.get("KDBENCH_OFFLINE") == "1":
        raise DatasetError(f"hdtf-mini not found (looked in {', '.join(map(str, candidates))}); "
                           "set KDBENCH_DATA to the hdtf-mini folder or the folder that contains it")
    if os.environ.get("KDBENCH_DATA"):
        import logging

        logging.getLogger("kdbench.data").warning(
            "KDBENCH_DATA=%s holds no complete hdtf-mini (gt/, ref/, audio/); downloading to %s",
            os.environ["KDBENCH_DATA"], cache)
    return download_hdtf_mini(cache)


def download_hdtf_mini(dest: Path) -> Path:
    """Fetch every hdtf-mini file from its upstream URL and check its sha256."""
    from .files import sha256_file
    from .home import download_url

    for rel, (url, sha) in FILES.items():
        out = dest / rel
        if out.is_file() and sha256_file(out) == sha:
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(out.name + ".part")
        try:
            download_url(url, part, progress=True)
        except OSError as e:
            raise DatasetError(f"cannot download {url} ({e}); put the file at {out} by hand") from e
        got = sha256_file(part)
        if got != sha:
            part.unlink()
            raise DatasetError(f"{url} has sha256 {got}, expected {sha}")
        os.replace(part, out)
    return dest
