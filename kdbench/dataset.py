"""Datasets: a manifest (JSONL, one row per clip) plus the files it names.

A dataset is given by name (built-in: ``hdtf-mini``, ``hdtf``) or by folder. A folder either holds a
``manifest.jsonl`` or is laid out like hdtf-mini — ``gt/<clip_id>.mp4``, optional ``ref/<clip_id>.png``
and ``audio/<clip_id>.wav`` — from which the manifest is derived. A clip with a GT video takes its
reference frame (first frame) and its audio from that video: the paper's protocol.

Every result carries the dataset's ``manifest_id``: a hash of the sorted clip list and file checksums.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetError
from .files import atomic_path, sha256_file

MANIFEST_NAME = "manifest.jsonl"
MAX_CLIP_ID_LEN = 200  # + ".mp4" stays under the 255-byte file-name limit


def clip_id_problem(clip_id: Any) -> str | None:
    """Why ``clip_id`` cannot be a clip id, or None. A clip id is a file name (``videos/<clip_id>.mp4``), never
    a path: no ``/`` or ``\\``, no leading dot (so no ``..``), no control characters, not empty."""
    if not isinstance(clip_id, str):
        return f"clip id {clip_id!r} is a {type(clip_id).__name__}, not a string"
    if not clip_id:
        return "clip id is empty"
    bad = sorted({c for c in clip_id if c in "/\\" or unicodedata.category(c) == "Cc"})
    if bad:
        return f"clip id {clip_id!r} contains {', '.join(repr(c) for c in bad)} (a clip id is a name, not a path)"
    if clip_id.startswith("."):
        return f"clip id {clip_id!r} starts with a dot (a clip id is a name, not a path or a hidden file)"
    if len(clip_id.encode()) > MAX_CLIP_ID_LEN:
        return f"clip id {clip_id[:40]!r}... is longer than {MAX_CLIP_ID_LEN} bytes"
    return None


def check_clip_id(clip_id: Any) -> str:
    """``clip_id`` if it is a safe file name, else :class:`DatasetError` saying why."""
    why = clip_id_problem(clip_id)
    if why:
        raise DatasetError(f"{why}; rename the clip (letters, digits, '_', '-', '.' inside the name)")
    return clip_id


def inside_root(root: Path, path: Path, what: str) -> Path:
    """``path`` resolved (symlinks followed); :class:`DatasetError` unless it lies inside ``root`` (resolved)."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if not resolved.is_relative_to(base):
        raise DatasetError(f"{what} {path} resolves to {resolved}, outside the dataset root {base}: dataset files "
                           "must lie inside the dataset folder (copy them there instead of linking or using '..')")
    return resolved


@dataclass(frozen=True)
class ClipSpec:
    """One manifest row. Paths are absolute once loaded.

    ``ref_image`` / ``audio`` are None when they come from ``gt_video`` (first frame / its audio track).
    ``sha256`` maps each file role (``gt_video``, ``ref_image``, ``audio``) to its checksum.
    """

    clip_id: str
    gt_video: Path | None = None
    ref_image: Path | None = None
    audio: Path | None = None
    fps: float = 25.0
    n_frames: int | None = None
    sha256: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_clip_id(self.clip_id)

    def files(self) -> dict[str, Path]:
        return {k: v for k, v in (("gt_video", self.gt_video), ("ref_image", self.ref_image),
                                  ("audio", self.audio)) if v is not None}

    def load_ref_image(self) -> np.ndarray:
        """Reference image ``uint8[H,W,3]`` RGB (the GT video's first frame when no image is given)."""
        if self.ref_image is not None:
            from PIL import Image

            try:
                with Image.open(self.ref_image) as im:
                    return np.asarray(im.convert("RGB"))
            except OSError as e:
                raise DatasetError(f"cannot read reference image {self.ref_image}: {e}") from e
        if self.gt_video is None:
            raise DatasetError(f"clip {self.clip_id} has neither a reference image nor a GT video")
        from .video import iter_frames

        for frame in iter_frames(self.gt_video, max_frames=1):
            return frame
        raise DatasetError(f"GT video {self.gt_video} has no frames")

    def load_audio(self) -> np.ndarray:
        """Driving audio ``int16[N]`` mono 16 kHz (the GT video's track when no wav is given)."""
        from .audio import read_audio

        src = self.audio if self.audio is not None else self.gt_video
        if src is None:
            raise DatasetError(f"clip {self.clip_id} has neither an audio file nor a GT video")
        return read_audio(src)

    def to_row(self, root: Path) -> dict[str, Any]:
        row: dict[str, Any] = {"clip_id": self.clip_id}
        for key, p in self.files().items():
            row[key] = os.path.relpath(p, root)
        row.update(fps=self.fps, n_frames=self.n_frames, sha256=dict(self.sha256))
        row.update(self.extra)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any], root: Path) -> ClipSpec:
        if "clip_id" not in row:
            raise DatasetError(f"manifest row without clip_id: {row}")
        known = {"clip_id", "gt_video", "ref_image", "audio", "fps", "n_frames", "sha256"}
        check_clip_id(row["clip_id"])
        paths = {k: inside_root(root, root / row[k], f"{k} of clip {row['clip_id']!r}") if row.get(k) else None
                 for k in ("gt_video", "ref_image", "audio")}
        return cls(clip_id=row["clip_id"], fps=float(row.get("fps", 25.0)), n_frames=row.get("n_frames"),
                   sha256=dict(row.get("sha256") or {}), extra={k: v for k, v in row.items() if k not in known},
                   **paths)


@dataclass
class Dataset:
    """A named, ordered list of clips with a content hash."""

    name: str
    root: Path
    clips: list[ClipSpec]

    @property
    def manifest_id(self) -> str:
        """sha256 (first 16 hex) of the sorted clip ids and their file checksums."""
        payload = [[c.clip_id, sorted(c.sha256.items())] for c in sorted(self.clips, key=lambda c: c.clip_id)]
        return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.clips)

    def get(self, clip_id: str) -> ClipSpec:
        for c in self.clips:
            if c.clip_id == clip_id:
                return c
        raise DatasetError(f"clip {clip_id!r} is not in dataset {self.name!r}")

    def limit(self, n: int | None) -> Dataset:
        return self if n is None else Dataset(self.name, self.root, self.clips[:n])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "root": str(self.root), "n_clips": len(self.clips),
                "manifest_id": self.manifest_id}

    def write_manifest(self, path: str | os.PathLike | None = None) -> Path:
        path = Path(path) if path else self.root / MANIFEST_NAME
        lines = "".join(json.dumps(c.to_row(path.parent)) + "\n" for c in self.clips)
        with atomic_path(path) as tmp:
            tmp.write_text(lines)
        return path


def read_manifest(path: str | os.PathLike, name: str | None = None) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"manifest not found: {path}")
    clips = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            clips.append(ClipSpec.from_row(json.loads(line), path.parent))
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{i}: not valid JSON ({e})") from e
        except DatasetError as e:
            raise DatasetError(f"{path}:{i}: {e}") from e
    if not clips:
        raise DatasetError(f"manifest {path} lists no clips")
    ids = [c.clip_id for c in clips]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"manifest {path} lists a clip twice")
    return Dataset(name or path.parent.name, path.parent.resolve(), clips)


def derive_from_layout(root: str | os.PathLike, name: str | None = None, checksums: bool = True) -> Dataset:
    """Build the manifest of an hdtf-mini-style folder (``gt/``, ``ref/``, ``audio/``).

    Clips: every ``gt/<id>.mp4`` (reference frame and audio from the video), and every
    ``ref/<id>.png`` that has a matching ``audio/<id>.wav`` and no GT video. Audio files without a
    reference image are not clips.
    """
    root = Path(root).resolve()
    gt = {p.stem: p for p in sorted((root / "gt").glob("*.mp4")) if not p.name.startswith(".")}  # hidden: no clip
    refs = {p.stem: p for p in sorted((root / "ref").glob("*.png")) if not p.name.startswith(".")}
    auds = {p.stem: p for p in sorted((root / "audio").glob("*.wav")) if not p.name.startswith(".")}
    if not gt and not refs:
        raise DatasetError(
            f"{root} is not a dataset: it has no {MANIFEST_NAME}, no gt/*.mp4 and no ref/*.png. "
            "Run `kdbench data prepare` or point --dataset at a prepared folder."
        )
    clips = []
    for cid in sorted(set(gt) | (set(refs) & set(auds))):
        files = {"gt_video": gt.get(cid)} if cid in gt else {"ref_image": refs[cid], "audio": auds[cid]}
        try:
            check_clip_id(cid)
            files = {k: inside_root(root, f, f"{k} of clip {cid!r}") for k, f in files.items()}
        except DatasetError as e:
            raise DatasetError(f"{root}: {e}") from e
        sha = {k: sha256_file(p) for k, p in files.items()} if checksums else {}
        n_frames = None
        if cid in gt:
            from .video import probe_video

            n_frames = probe_video(gt[cid]).n_frames
        clips.append(ClipSpec(clip_id=cid, n_frames=n_frames, sha256=sha, **files))
    return Dataset(name or root.name, root, clips)


BUILTIN_DATASETS = {
    "hdtf-mini": "real HDTF material: 1 GT clip (WDA_KatieHill_000) + 3 reference image/audio pairs",
    "hdtf": "the prepared 349-clip HDTF test set (`kdbench data prepare hdtf`, then KDBENCH_HDTF=DIR)",
}


def load_dataset(name_or_dir: str | os.PathLike) -> Dataset:
    """Resolve a built-in dataset name or a folder into a :class:`Dataset`."""
    key = str(name_or_dir)
    if key == "hdtf-mini":
        from .hdtf_mini import hdtf_mini_root

        return derive_from_layout(hdtf_mini_root(), name="hdtf-mini")
    if key == "hdtf":
        env = os.environ.get("KDBENCH_HDTF")
        if not env:
            raise DatasetError("dataset 'hdtf' is not prepared here: run `kdbench data prepare hdtf --raw DIR "
                               "--out DIR` and set KDBENCH_HDTF=DIR (or pass --dataset DIR)")
        return read_manifest(Path(env) / MANIFEST_NAME, name="hdtf")
    root = Path(key)
    if not root.exists():
        raise DatasetError(f"unknown dataset {key!r}: not a built-in ({', '.join(BUILTIN_DATASETS)}) "
                           "and no such folder")
    if root.is_file():
        return read_manifest(root)
    if (root / MANIFEST_NAME).is_file():
        return read_manifest(root / MANIFEST_NAME)
    return derive_from_layout(root)


@dataclass
class VerifyReport:
    ok: bool
    problems: list[str]
    summary: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def verify_dataset(ds: Dataset) -> VerifyReport:
    """Check every file exists and matches its sha256; report counts, durations and fps."""
    from .audio import read_audio
    from .video import probe_video

    problems: list[str] = []
    durations, fpss = [], []
    for c in ds.clips:
        for role, p in c.files().items():
            if not p.is_file():
                problems.append(f"{c.clip_id}: {role} missing: {p}")
                continue
            want = c.sha256.get(role)
            if want is None:
                problems.append(f"{c.clip_id}: {role} has no sha256 in the manifest")
            elif sha256_file(p) != want:
                problems.append(f"{c.clip_id}: {role} sha256 mismatch ({p})")
        try:
            if c.gt_video is not None and c.gt_video.is_file():
                info = probe_video(c.gt_video)
                durations.append(info.duration_s)
                fpss.append(info.fps)
                if abs(info.fps - c.fps) > 1e-3:
                    problems.append(f"{c.clip_id}: GT video is {info.fps:g} fps, manifest says {c.fps:g}")
                if c.n_frames is not None and info.n_frames != c.n_frames:
                    problems.append(f"{c.clip_id}: GT video has {info.n_frames} frames, manifest says {c.n_frames}")
                if not info.has_audio:
                    problems.append(f"{c.clip_id}: GT video has no audio track")
            elif c.audio is not None and c.audio.is_file():
                durations.append(len(read_audio(c.audio)) / 16000)
        except Exception as e:  # noqa: BLE001 - every unreadable file is reported, not raised
            problems.append(f"{c.clip_id}: unreadable: {e}")
    summary = {**ds.describe(), "n_with_gt": sum(c.gt_video is not None for c in ds.clips),
               "duration_s": {"min": min(durations, default=None), "max": max(durations, default=None)},
               "fps": sorted(set(fpss))}
    return VerifyReport(ok=not problems, problems=problems, summary=summary)
