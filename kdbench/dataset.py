"""Datasets: a manifest (JSONL, one row per clip) plus the files it names.

A dataset is given by name (built-in: ``hdtf-mini``, ``hdtf``) or by folder. A folder either holds a
``manifest.jsonl`` or is laid out like hdtf-mini — ``gt/<clip_id>.mp4``, optional ``ref/<clip_id>.png``
and ``audio/<clip_id>.wav`` — from which the manifest is derived. A clip with a GT video takes its
reference frame (first frame) and its audio from that video: the paper's protocol.

Every result carries the dataset's ``manifest_id``: a hash of the sorted clip list and file checksums.
A manifest pins those checksums, and a file that changed since is caught when its clip is used
(:meth:`ClipSpec.check_files`), not only by ``kdbench data verify``. A folder without a manifest has no
pinned checksums (they are computed from the files themselves); ``kdbench data freeze`` writes one.

The dataset's frame size (:meth:`Dataset.frame_size`) is recorded per row (``frame_size: [W, H]``) and
must agree across clips; without any, it is :data:`DEFAULT_FRAME_SIZE`.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetError, KdbenchError
from .files import atomic_path, sha256_file

MANIFEST_NAME = "manifest.jsonl"
MAX_CLIP_ID_LEN = 200  # + ".mp4" stays under the 255-byte file-name limit


INVISIBLE_CATEGORIES = frozenset({"Cf", "Zl", "Zp", "Zs", "Cs"})
"""Unicode categories refused in clip ids besides controls: format characters (zero-width space U+200B, the
bidirectional overrides U+202A..U+202E and isolates U+2066..U+2069, U+FEFF), line and paragraph separators
(U+2028, U+2029), spaces other than the plain one (no-break space U+00A0, ...) and lone surrogates. Each is
invisible or reorders the text around it, so one id could be shown as another in a report or a log."""


def _char_name(c: str) -> str:
    cat = unicodedata.category(c)
    return f"U+{ord(c):04X} ({unicodedata.name(c, 'a lone surrogate' if cat == 'Cs' else cat)})"


def clip_id_problem(clip_id: Any) -> str | None:
    """Why ``clip_id`` cannot be a clip id, or None. A clip id is a file name (``videos/<clip_id>.mp4``), never
    a path: no ``/`` or ``\\``, no leading dot (so no ``..``), no control characters, not empty; and it reads as
    what it is: no invisible, direction-changing or line-separating characters (:data:`INVISIBLE_CATEGORIES`),
    no space at either end."""
    if not isinstance(clip_id, str):
        return f"clip id {clip_id!r} is a {type(clip_id).__name__}, not a string"
    if not clip_id:
        return "clip id is empty"
    bad = sorted({c for c in clip_id if c in "/\\" or unicodedata.category(c) == "Cc"})
    if bad:
        return f"clip id {clip_id!r} contains {', '.join(repr(c) for c in bad)} (a clip id is a name, not a path)"
    hidden = sorted({c for c in clip_id if c != " " and unicodedata.category(c) in INVISIBLE_CATEGORIES})
    if hidden:
        shown = "".join(f"\\u{ord(c):04x}" if c in hidden else c for c in clip_id)
        return (f"clip id '{shown}' contains {', '.join(map(_char_name, hidden))}: an invisible, direction-changing "
                "or line-separating character (one id could be shown as another)")
    if clip_id != clip_id.strip(" "):
        return f"clip id {clip_id!r} starts or ends with a space (one id could be shown as another)"
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


DEFAULT_FRAME_SIZE = (512, 512)
"""Frame size (width, height) of a dataset whose rows record none (HDTF's evaluation size)."""


@dataclass(frozen=True)
class ClipSpec:
    """One manifest row. Paths are absolute once loaded.

    ``ref_image`` / ``audio`` are None when they come from ``gt_video`` (first frame / its audio track).
    ``sha256`` maps each file role (``gt_video``, ``ref_image``, ``audio``) to its checksum; ``unpinned`` names the
    roles whose checksum was computed from the file when the dataset was loaded (a folder without a manifest, a
    manifest row without ``sha256``) rather than pinned by a manifest.
    """

    clip_id: str
    gt_video: Path | None = None
    ref_image: Path | None = None
    audio: Path | None = None
    fps: float = 25.0
    n_frames: int | None = None
    sha256: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    unpinned: frozenset[str] = frozenset()

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
            except FileNotFoundError:
                raise DatasetError(f"reference image not found: {self.ref_image}") from None
            except (OSError, SyntaxError, ValueError) as e:  # PIL: unidentified, truncated, broken chunks
                why = "the file is empty (0 bytes)" if self.ref_image.is_file() and not self.ref_image.stat().st_size \
                    else f"damaged or not an image ({e})"
                raise DatasetError(f"cannot read reference image {self.ref_image}: {why}") from e
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
        if self.audio is None:
            from .video import probe_video

            probe_video(self.gt_video)  # a truncated GT video says so (not "audio too short")
        return read_audio(src)

    def check_files(self) -> None:
        """Raise :class:`DatasetError` when a file is missing or its sha256 differs from the manifest's.

        Called by ``kdbench run`` and ``kdbench eval`` for each clip they use, so a file replaced since
        the manifest was written fails its clip instead of being scored under the old ``manifest_id``.
        """
        for role, path in self.files().items():
            want = self.sha256.get(role)
            if not path.is_file():
                raise DatasetError(f"{role} of clip {self.clip_id} is missing: {path}")
            if want and sha256_file(path) != want:
                raise DatasetError(f"{role} {path} changed since the manifest was written (sha256 differs from "
                                   f"{want[:12]}…): restore it, or re-freeze the dataset (`kdbench data freeze`) "
                                   "and re-run; `kdbench data verify` lists every changed file")

    def to_row(self, root: Path) -> dict[str, Any]:
        row: dict[str, Any] = {"clip_id": self.clip_id}
        for key, p in self.files().items():
            row[key] = os.path.relpath(p, root)
        row.update(fps=self.fps, n_frames=self.n_frames, sha256=dict(self.sha256))
        row.update(self.extra)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any], root: Path) -> ClipSpec:
        """Build a clip from one manifest row; a field of the wrong type raises :class:`DatasetError` naming it."""
        if not isinstance(row, dict):
            raise DatasetError(f"a row must be a JSON object, got {type(row).__name__}")
        if not isinstance(row.get("clip_id"), str):
            raise DatasetError(f"field clip_id must be a non-empty string, got {row.get('clip_id')!r}")
        check_clip_id(row["clip_id"])  # a file name: not empty, no path separators, no leading dot
        for k in ("gt_video", "ref_image", "audio"):
            if row.get(k) is not None and not isinstance(row[k], str):
                raise DatasetError(f"field {k} must be a path string, got {row[k]!r}")
        fps = row.get("fps", 25.0)
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
            raise DatasetError(f"field fps must be a number > 0, got {fps!r}")
        n_frames = row.get("n_frames")
        if n_frames is not None and (isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1):
            raise DatasetError(f"field n_frames must be an integer >= 1 or null, got {n_frames!r}")
        sha = row.get("sha256") or {}
        if not isinstance(sha, dict) or not all(isinstance(v, str) for v in sha.values()):
            raise DatasetError(f"field sha256 must map file roles to hex strings, got {sha!r}")
        size = row.get("frame_size")
        if size is not None and not (isinstance(size, list) and len(size) == 2
                                     and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise DatasetError(f"field frame_size must be [width, height] in pixels, got {size!r}")
        known = {"clip_id", "gt_video", "ref_image", "audio", "fps", "n_frames", "sha256"}
        paths = {k: inside_root(root, root / row[k], f"{k} of clip {row['clip_id']!r}") if row.get(k) else None
                 for k in ("gt_video", "ref_image", "audio")}
        return cls(clip_id=row["clip_id"], fps=float(fps), n_frames=n_frames,
                   sha256=dict(sha), extra={k: v for k, v in row.items() if k not in known},
                   **paths)


@dataclass
class Dataset:
    """A named, ordered list of clips with a content hash."""

    name: str
    root: Path
    clips: list[ClipSpec]
    pinned: bool = True
    """True when every checksum comes from a manifest (or a built-in list), False when some were computed from the
    files (a folder without a manifest, manifest rows without ``sha256``)."""
    manifest: Path | None = None
    """The manifest file the clips were read from (None: derived from a folder's layout or built in)."""

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
        return self if n is None else Dataset(self.name, self.root, self.clips[:n], self.pinned, self.manifest)

    def frame_size(self) -> tuple[int, int]:
        """The dataset's frame size ``(width, height)``: the ``frame_size`` its rows record (else their GT
        video's header size), which must be the same for every clip and even; :data:`DEFAULT_FRAME_SIZE`
        when no clip records one. Raises :class:`DatasetError` naming the clips and ``--frame-size``."""
        from .video import video_size

        sizes: dict[tuple[int, int], list[str]] = {}
        for c in self.clips:
            fs = c.extra.get("frame_size")
            if fs is None and c.gt_video is not None and c.gt_video.is_file():
                try:
                    fs = video_size(c.gt_video)
                except KdbenchError:  # an unreadable GT video fails its own clip later
                    continue
            if fs is not None:
                sizes.setdefault((int(fs[0]), int(fs[1])), []).append(c.clip_id)
        if not sizes:
            return DEFAULT_FRAME_SIZE
        if len(sizes) > 1:
            listing = "; ".join(f"{w}x{h}: {', '.join(ids[:3])}{' …' if len(ids) > 3 else ''}"
                                for (w, h), ids in sizes.items())
            raise DatasetError(f"dataset {self.name!r} mixes frame sizes ({listing}); pass --frame-size WxH")
        (w, h), ids = next(iter(sizes.items()))
        if w % 2 or h % 2:
            raise DatasetError(f"clip {ids[0]} of dataset {self.name!r} is {w}x{h}: an odd frame size cannot be "
                               f"encoded (H.264 yuv420p needs even sizes); pass --frame-size WxH with even numbers, "
                               f"e.g. --frame-size {w - w % 2}x{h - h % 2}")
        return (w, h)

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
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"manifest {path} is not UTF-8 text (byte {e.start}): is it the right file?") from e
    except OSError as e:
        raise DatasetError(f"cannot read manifest {path}: {e.strerror}") from e
    seen: dict[str, int] = {}
    # JSON Lines ends a row at "\n" only: str.splitlines() would also cut at U+2028, U+0085, ... which a JSON
    # string may hold raw, and so reject a valid row
    for i, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            clip = ClipSpec.from_row(json.loads(line), path.parent)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{i}: not valid JSON ({e})") from e
        except DatasetError as e:
            raise DatasetError(f"{path}:{i}: {e}") from e
        if clip.clip_id in seen:
            raise DatasetError(f"{path}:{i}: clip id {clip.clip_id!r} is listed twice (first on line "
                               f"{seen[clip.clip_id]}); each clip id names one clip")
        seen[clip.clip_id] = i
        clips.append(clip)
    if not clips:
        raise DatasetError(f"manifest {path} lists no clips")
    clips = [_hash_unpinned(c) for c in clips]
    return Dataset(name or path.parent.name, path.parent.resolve(), clips,
                   pinned=not any(c.unpinned for c in clips), manifest=path)


def _hash_unpinned(c: ClipSpec) -> ClipSpec:
    """``c`` with the sha256 of every file its row does not pin computed now (recorded in ``unpinned``), so that
    the dataset's ``manifest_id`` follows the content of such files: two clips' files swapped, or one replaced,
    give another id and ``kdbench check`` calls the results incomparable, not drifted. A missing or unreadable
    file is left unhashed (it fails its clip)."""
    todo = [r for r in c.files() if not c.sha256.get(r)]
    if not todo:
        return c
    sha = dict(c.sha256)
    for role in todo:
        try:
            sha[role] = sha256_file(c.files()[role])
        except OSError:
            continue
    return replace(c, sha256=sha, unpinned=frozenset(todo))


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
        n_frames, extra = None, {}
        if cid in gt:
            from .video import probe_video

            try:
                info = probe_video(gt[cid])
                n_frames, extra = info.n_frames, {"frame_size": [info.width, info.height]}
            except KdbenchError:  # a damaged or empty file fails its clip (and `data verify`), not the dataset
                pass
        clips.append(ClipSpec(clip_id=cid, n_frames=n_frames, sha256=sha, extra=extra, unpinned=frozenset(files),
                              **files))
    return Dataset(name or root.name, root, clips, pinned=False)


def dataset_files(ds: Dataset) -> list[tuple[str, Path]]:
    """``("<role> of clip <id>", path)`` for every file of ``ds`` (for :func:`kdbench.runstore.check_out_apart`)."""
    return [(f"{role} of clip {c.clip_id!r}", p) for c in ds.clips for role, p in c.files().items()]


BUILTIN_DATASETS = {
    "hdtf-mini": "real HDTF material: 1 GT clip (WDA_KatieHill_000) + 3 reference image/audio pairs",
    "hdtf": "the prepared 349-clip HDTF test set (`kdbench data prepare hdtf`, then KDBENCH_HDTF=DIR)",
}


def pinned_hdtf_mini():
    """The hdtf-mini :class:`~kdbench.dataset.Dataset` with the checksums pinned in :data:`FILES` (so
    ``data verify`` compares against them, and a changed file fails its clip when used)."""
    from .hdtf_mini import FILES, hdtf_mini_root

    root = hdtf_mini_root()
    ds = derive_from_layout(root, name="hdtf-mini", checksums=False)
    by_path = {(root / rel).resolve(): sha for rel, (_, sha) in FILES.items()}
    for c in ds.clips:
        c.sha256.update({role: by_path[p.resolve()] for role, p in c.files().items() if p.resolve() in by_path})
    ds.pinned = True
    return ds


def load_dataset(name_or_dir: str | os.PathLike) -> Dataset:
    """Resolve a built-in dataset name or a folder into a :class:`Dataset`."""
    key = str(name_or_dir)
    if key == "hdtf-mini":
        return pinned_hdtf_mini()
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


def av_mismatch(n_frames: int, fps: float, audio_s: float) -> str | None:
    """Why a GT video of ``n_frames`` at ``fps`` and its own audio track of ``audio_s`` seconds do not cover the same
    time, or None: they may differ by up to the normaliser's padding tolerance
    (:data:`kdbench.normalize.DEFAULT_MAX_PAD_FRAMES` frames), as a run would accept them."""
    from .normalize import DEFAULT_MAX_PAD_FRAMES

    video_s = n_frames / fps
    if abs(video_s - audio_s) <= DEFAULT_MAX_PAD_FRAMES / fps:
        return None
    return (f"GT video is {video_s:.2f} s ({n_frames} frames at {fps:g} fps) but its audio track is {audio_s:.2f} s: "
            f"they differ by more than {DEFAULT_MAX_PAD_FRAMES} frames, so the video does not show what its audio "
            "says (damaged or badly cut)")


@dataclass
class VerifyReport:
    ok: bool
    problems: list[str]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """Per clip: what kdbench handles but scores differently from the file as it is (a variable-frame-rate GT
    video); not problems, so ``ok`` stays true."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def unpinned_note(ds: Dataset) -> str:
    if ds.manifest is not None:
        n = sum(len(c.unpinned) for c in ds.clips)
        return (f"{n} file(s) have no sha256 in {ds.manifest}: their checksums were computed from the files when "
                "the dataset was loaded (so the manifest_id changes with their content), but a change made before "
                f"cannot be detected. Pin them with `kdbench data freeze {ds.manifest} --force`.")
    return (f"{ds.root} has no {MANIFEST_NAME}: its checksums are computed from the files themselves, so a "
            f"changed file cannot be detected. Freeze them with `kdbench data freeze {ds.root}` (writes "
            f"{ds.root / MANIFEST_NAME}); later runs and verifies compare against it.")


def verify_dataset(ds: Dataset) -> VerifyReport:
    """Check every clip as ``kdbench run`` will use it: files present and matching their pinned sha256, GT
    video readable (fps, frame count, audio track, not truncated), reference image decodable, audio at least
    1 s and not near-silent (:func:`kdbench.audio.check_audio`). Reports counts, durations and fps.
    A variable-frame-rate GT video is a warning (not a problem): metrics resample it by its timestamps
    (:attr:`kdbench.clip.EvalClip.gt_frames`), so its average frame rate is not compared with the manifest's.

    One problem line per clip and cause; a folder without a manifest gets a note that it has no pinned
    checksums instead of comparing its files with hashes computed from themselves.
    """
    from . import FPS
    from .audio import check_audio
    from .normalize import covered_frames
    from .video import probe_video

    problems: list[str] = []
    warnings: list[str] = []
    notes: list[str] = [] if ds.pinned else [unpinned_note(ds)]
    durations, fpss = [], []
    for c in ds.clips:
        for role, p in c.files().items():
            if not p.is_file():
                problems.append(f"{c.clip_id}: {role} missing: {p}")
                continue
            if p.stat().st_size == 0:
                problems.append(f"{c.clip_id}: {role} is empty (0 bytes): {p}")
                continue
            if role in c.unpinned:
                if ds.manifest is not None:
                    problems.append(f"{c.clip_id}: {role} has no sha256 in the manifest")
                continue
            want = c.sha256.get(role)
            if want is None:
                problems.append(f"{c.clip_id}: {role} has no sha256 in the manifest")
            elif sha256_file(p) != want:
                problems.append(f"{c.clip_id}: {role} sha256 mismatch: changed since the manifest was written ({p})")
        if any(not p.is_file() or p.stat().st_size == 0 for p in c.files().values()):
            continue
        try:
            if c.gt_video is not None:
                info = probe_video(c.gt_video)
                durations.append(info.duration_s)
                fpss.append(info.fps)
                if info.vfr:
                    warnings.append(f"{c.clip_id}: GT video {c.gt_video} has a variable frame rate (uneven "
                                    f"timestamps, {info.n_frames} frames over {info.duration_s:.3f} s): metrics that "
                                    f"compare with it resample it by its timestamps to "
                                    f"{covered_frames(info.duration_s)} frames at {FPS} fps (gt_vfr in their "
                                    f"per-clip records); re-encode it at a constant {FPS} fps to score it as it is")
                elif abs(info.fps - c.fps) > 1e-3:
                    problems.append(f"{c.clip_id}: GT video is {info.fps:g} fps, manifest says {c.fps:g}")
                if c.n_frames is not None and info.n_frames != c.n_frames:
                    problems.append(f"{c.clip_id}: GT video has {info.n_frames} frames, manifest says {c.n_frames}")
                if not info.has_audio:
                    problems.append(f"{c.clip_id}: GT video has no audio track")
                    continue
            c.load_ref_image()
            audio = c.load_audio()
            if c.gt_video is None:
                durations.append(len(audio) / 16000)
            elif c.audio is None and info.fps > 0:
                why = av_mismatch(info.n_frames, info.fps, len(audio) / 16000)
                if why:
                    problems.append(f"{c.clip_id}: {why}")
            check_audio(audio)
        except KdbenchError as e:
            problems.append(f"{c.clip_id}: {e}")
        except Exception as e:  # noqa: BLE001 - every unreadable file is reported, not raised
            problems.append(f"{c.clip_id}: unreadable: {type(e).__name__}: {e}")
    summary = {**ds.describe(), "n_with_gt": sum(c.gt_video is not None for c in ds.clips),
               "pinned_checksums": ds.pinned,
               "duration_s": {"min": min(durations, default=None), "max": max(durations, default=None)},
               "fps": sorted(set(fpss))}
    return VerifyReport(ok=not problems, problems=problems, summary=summary, notes=notes, warnings=warnings)
