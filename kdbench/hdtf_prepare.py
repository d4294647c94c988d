"""``kdbench data prepare hdtf``: the evaluation set from raw HDTF downloads.

Input (``--raw DIR``): clips named ``{subset}_{video}_{clip:03d}.mp4`` as universome/HDTF's
``download.py`` writes them, and/or its full downloads ``_videos_raw/{subset}_{video}.mp4``. With
``--annotations`` (the official ``HDTF_dataset/`` folder) a full download is cut at the annotated
interval and cropped with the annotated box **scaled by actual/listed height** (universome crops a
1080p download with 720p coordinates; see research/harness_anchors.md §2); a clip that is not square
yet is cropped the same way; an already-cropped square clip is only resized.

Output per clip: ``gt/<id>.mp4`` (first ``seconds`` at 25 fps, ``size``x``size``, 16 kHz mono audio),
``audio/<id>.wav``, ``ref/<id>.png`` (first frame) and one ``manifest.jsonl`` row with checksums and
provenance (YouTube id, interval, crop box, source fps and size).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import FPS, SAMPLE_RATE
from .dataset import ClipSpec, Dataset, check_clip_id
from .errors import DatasetError, KdbenchError
from .files import sha256_file

log = logging.getLogger("kdbench.prepare")
CLIP_RE = re.compile(r"^(RD|WDA|WRA)_(.+)_(\d{3})$")


def parse_time(text: str) -> float:
    """``"01:30"`` or ``"00:01:30"`` -> seconds."""
    secs = 0.0
    for part in text.strip().split(":"):
        secs = secs * 60 + float(part)
    return secs


def _video_key(clip_id: str) -> str | None:
    """``WDA_KatieHill_000`` -> ``WDA_KatieHill`` (the name of the full download)."""
    m = CLIP_RE.match(clip_id)
    return f"{m.group(1)}_{m.group(2)}" if m else None


def _read_table(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        return {}
    rows = {}
    for line in path.read_text(encoding="utf-8-sig").splitlines():  # WDA_video_url.txt starts with a BOM
        parts = line.strip().split()
        if parts:
            rows[parts[0]] = parts[1:]
    return rows


@dataclass(frozen=True)
class ClipAnnotation:
    """What the official HDTF files say about one clip (crop box in listed-resolution pixels)."""

    clip_id: str
    youtube_url: str | None
    interval_s: tuple[float, float] | None
    crop_xywh: tuple[int, int, int, int] | None
    listed_height: int | None


def read_annotations(folder: str | os.PathLike) -> dict[str, ClipAnnotation]:
    """Parse ``{RD,WDA,WRA}_{video_url,annotion_time,crop_wh,resolution}.txt`` into per-clip records."""
    folder = Path(folder)
    out: dict[str, ClipAnnotation] = {}
    for subset in ("RD", "WDA", "WRA"):
        urls = _read_table(folder / f"{subset}_video_url.txt")
        times = _read_table(folder / f"{subset}_annotion_time.txt")
        crops = _read_table(folder / f"{subset}_crop_wh.txt")
        res = _read_table(folder / f"{subset}_resolution.txt")
        for video_file, intervals in times.items():
            video = video_file.removesuffix(".mp4")
            for idx, interval in enumerate(intervals):
                crop = crops.get(f"{video}_{idx}.mp4")
                start, _, end = interval.partition("-")
                height = res.get(video_file, [None])[0]
                out[f"{subset}_{video}_{idx:03d}"] = ClipAnnotation(
                    clip_id=f"{subset}_{video}_{idx:03d}",
                    youtube_url=(urls.get(video) or [None])[0],
                    interval_s=(parse_time(start), parse_time(end)) if end else None,
                    crop_xywh=tuple(int(v) for v in crop) if crop and len(crop) == 4 else None,
                    listed_height=int(height) if height and height.isdigit() else None,
                )
    if not out:
        raise DatasetError(f"{folder} holds no HDTF annotation files (*_annotion_time.txt)")
    return out


def scaled_crop(crop_xywh: tuple[int, int, int, int], listed_h: int | None, actual_h: int) -> tuple[int, int, int, int]:
    """Scale an annotation box (x, w, y, h at the listed resolution) to the downloaded frame height."""
    s = actual_h / listed_h if listed_h else 1.0
    x, w, y, h = crop_xywh
    return (round(x * s), round(w * s), round(y * s), round(h * s))


def centre_square(width: int, height: int) -> tuple[int, int, int, int]:
    side = min(width, height)
    return ((width - side) // 2, side, (height - side) // 2, side)


def _decode_segment(path: Path, start: float, seconds: float) -> tuple[np.ndarray, float]:
    """Frames whose timestamps fall in ``[start, start + seconds + 1 frame)``: ``(uint8[T,H,W,3], fps)``."""
    import av

    frames = []
    with av.open(str(path)) as container:
        vs = container.streams.video[0]
        fps = float(vs.average_rate)
        if start > 0:
            container.seek(int(start / vs.time_base), stream=vs, backward=True)
        end = start + seconds + 1.0 / fps
        for frame in container.decode(vs):
            t = float(frame.pts * vs.time_base) if frame.pts is not None else 0.0
            if t + 1e-6 < start:
                continue
            if t >= end:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
    if not frames:
        raise KdbenchError(f"{path}: no frames in [{start}, {start + seconds}] s")
    return np.stack(frames), fps


def prepare_clip(src: Path, out_root: Path, clip_id: str, *, start: float = 0.0, seconds: float = 8.0,
                 size: int = 512, crop_xywh: tuple[int, int, int, int] | None = None) -> ClipSpec:
    """Cut, resample, crop and resize one clip; write gt/ref/audio files; return its manifest row."""
    from PIL import Image

    from .audio import read_audio, write_wav
    from .normalize import resample_indices
    from .video import write_video

    frames, fps = _decode_segment(src, start, seconds)
    n_out = int(round(seconds * FPS))
    n_have = int(np.floor(len(frames) / fps * FPS + 1e-6))
    if n_have < n_out:
        raise KdbenchError(f"{src}: only {len(frames) / fps:.2f} s of video after {start} s; {seconds} s needed")
    audio = read_audio(src)
    a0 = int(round(start * SAMPLE_RATE))
    audio = audio[a0:a0 + int(round(seconds * SAMPLE_RATE))]
    if len(audio) < seconds * SAMPLE_RATE:
        raise KdbenchError(f"{src}: audio shorter than {seconds} s after {start} s")
    h, w = frames.shape[1:3]
    x, cw, y, ch = crop_xywh or centre_square(w, h)
    x, y = max(0, x), max(0, y)
    cw, ch = min(cw, w - x), min(ch, h - y)
    frames = frames[resample_indices(len(frames), fps, n_out)]
    out = np.stack([np.asarray(Image.fromarray(f[y:y + ch, x:x + cw]).resize((size, size), Image.BICUBIC))
                    for f in frames])
    gt = write_video(out_root / "gt" / f"{clip_id}.mp4", out, FPS, audio=audio)
    wav = write_wav(out_root / "audio" / f"{clip_id}.wav", audio)
    ref = out_root / "ref" / f"{clip_id}.png"
    ref.parent.mkdir(parents=True, exist_ok=True)
    from .video import iter_frames

    first = next(iter_frames(gt, max_frames=1))  # the reference is the first frame as stored in gt/
    Image.fromarray(first).save(ref)
    files = {"gt_video": gt, "ref_image": ref, "audio": wav}
    extra: dict[str, Any] = {"frame_size": [size, size], "source": src.name, "source_fps": fps,
                             "source_size": [w, h], "start_s": start, "crop_xywh": [x, cw, y, ch]}
    return ClipSpec(clip_id=clip_id, fps=float(FPS), n_frames=n_out,
                    sha256={k: sha256_file(p) for k, p in files.items()}, extra=extra, **files)


def prepare_hdtf(raw: str | os.PathLike, out: str | os.PathLike, *, annotations: str | os.PathLike | None = None,
                 clips_file: str | os.PathLike | None = None, seconds: float = 8.0, size: int = 512,
                 progress: bool = True) -> Dataset:
    """Prepare every requested clip; clips that cannot be prepared are listed in ``failures.txt``."""
    from tqdm import tqdm

    raw, out = Path(raw), Path(out)
    if not raw.is_dir():
        raise DatasetError(f"--raw {raw} is not a folder")
    ann = read_annotations(annotations) if annotations else {}
    available = {p.stem for p in raw.glob("*.mp4") if CLIP_RE.match(p.stem)}
    full = {p.stem: p for p in (raw / "_videos_raw").glob("*.mp4")} if (raw / "_videos_raw").is_dir() else {}
    if clips_file:
        wanted = [ln.strip() for ln in Path(clips_file).read_text().splitlines() if ln.strip()]
    else:
        wanted = sorted(available | {c for c in ann if _video_key(c) in full})
    if not wanted:
        raise DatasetError(f"no clips named {{subset}}_{{video}}_{{clip:03d}}.mp4 in {raw}")
    out.mkdir(parents=True, exist_ok=True)
    specs, failures = [], {}
    for cid in tqdm(wanted, desc="prepare hdtf", unit="clip", disable=not progress):
        a = ann.get(cid)
        try:
            check_clip_id(cid)
            video_key = _video_key(cid)
            if video_key is None:
                raise KdbenchError("not an HDTF clip id ({subset}_{video}_{clip:03d})")
            if a and a.interval_s and video_key in full:  # cut the full download ourselves
                src, start = full[video_key], a.interval_s[0]
                from .video import probe_video

                info = probe_video(src)
                crop = scaled_crop(a.crop_xywh, a.listed_height, info.height) if a.crop_xywh else None
            elif cid in available:
                src, start = raw / f"{cid}.mp4", 0.0
                from .video import probe_video

                info = probe_video(src)
                crop = None
                if info.width != info.height and a and a.crop_xywh:
                    crop = scaled_crop(a.crop_xywh, a.listed_height, info.height)
            else:
                raise KdbenchError("no raw file for this clip")
            spec = prepare_clip(src, out, cid, start=start, seconds=seconds, size=size, crop_xywh=crop)
            if a:
                spec.extra.update(youtube_url=a.youtube_url, interval_s=a.interval_s, annotation_crop_xywh=a.crop_xywh,
                                  listed_height=a.listed_height)
            specs.append(spec)
        except (KdbenchError, OSError) as e:
            failures[cid] = str(e)
            log.warning("skipping %s: %s", cid, e)
    if failures:
        (out / "failures.txt").write_text("".join(f"{k}\t{v}\n" for k, v in failures.items()))
    if not specs:
        raise DatasetError(f"no clip could be prepared; see {out / 'failures.txt'}")
    ds = Dataset("hdtf", out.resolve(), specs)
    ds.write_manifest()
    return ds
