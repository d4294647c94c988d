"""The run store: everything one ``kdbench run`` produced, crash-safe and resumable.

    RUN_DIR/
      config.json    resolved config (method, options, dataset + manifest_id, seed, device) and its hash
      env.json       versions, git hash, device/GPU/driver, weight checksums
      videos/<clip_id>.mp4   normalised outputs (written atomically)
      events.jsonl   one line per event: model load, and per clip frames, seconds, peak memory, error,
                     and the video's size and sha256

Re-running with the same config skips clips whose last event is ``ok`` and whose video is still the file
that event describes (size and sha256); a damaged or missing video is generated again. A different config
in the same folder is refused, naming the settings that differ, unless the folder holds no clip yet (a start
that failed before generating anything): then the new config replaces the old one. Opening a folder repairs a
torn last line of ``events.jsonl`` (a crash mid-write) and removes temporary files a killed run left behind.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import KdbenchError
from .files import atomic_path, naming, sha256_file

log = logging.getLogger("kdbench.run")

TMP_RE = re.compile(r"^\..+\.tmp(\d+)(\.[^.]*)?$")  # atomic_path's temporary names: .<stem>.tmp<pid><suffix>
CONFIG_KEYS_IGNORED = ("config_hash",)


def write_json_atomic(path: Path, obj: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    return path


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise KdbenchError(f"{path} not found") from e
    except json.JSONDecodeError as e:
        raise KdbenchError(f"{path} is not valid JSON: {e}") from e
    except UnicodeDecodeError as e:
        raise KdbenchError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}): not a file kdbench "
                           "wrote; restore it or start the run in a new folder") from e


RUN_FILES = ("config.json", "env.json", "events.jsonl", "metrics.json")
"""The files a run folder holds beside ``videos/``."""


def check_out_apart(out: str | os.PathLike, folders: Iterable[tuple[str, Path]] = (),
                    files: Iterable[tuple[str, Path]] = ()) -> None:
    """:class:`KdbenchError` when a run store at ``out`` would write into or over an input, checked before the
    folder is created or opened: an input folder (``(what, folder)``, e.g. ``("--videos", DIR)``) that is
    ``out`` or ``out/videos`` or holds ``out``; an input file (``(what, path)``, e.g. a dataset's GT video) that
    lies in ``out/videos`` or is one of the run folder's own files (:data:`RUN_FILES`). Symbolic links are
    followed, so a link that leads there counts as there."""
    root = Path(out).resolve()
    videos = (Path(out) / "videos").resolve()
    for what, folder in folders:
        f = Path(folder).resolve()
        if root.is_relative_to(f) or f == videos:
            where = ("would write its videos into" if f == videos else "is" if f == root else "lies inside")
            shown = f"{folder} (resolved: {f})" if str(f) != str(folder) else str(folder)
            raise KdbenchError(
                f"--out {out} {where} the {what} folder {shown}: the run store writes {Path(out) / 'videos'}"
                f"/<clip_id>.mp4 and {Path(out) / 'config.json'}, so the input files would be overwritten by their "
                f"normalised copies. Nothing was written; choose an --out outside {folder}")
    own = {root / n for n in RUN_FILES}
    for what, path in files:
        p = Path(path).resolve()
        if p.parent == videos or p in own:
            raise KdbenchError(
                f"--out {out} would overwrite {what} {path}: the run store writes {Path(out) / 'videos'}/<clip_id>.mp4 "
                f"and {', '.join(RUN_FILES)} there. Nothing was written; choose an --out outside the dataset folder")


class RunStore:
    """A run folder. ``open`` creates it or checks that an existing one has the same config."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    def video_path(self, clip_id: str) -> Path:
        """``videos/<clip_id>.mp4``; a clip id that is not a plain file name is refused (never a path)."""
        from .dataset import check_clip_id

        return self.root / "videos" / f"{check_clip_id(clip_id)}.mp4"

    def generated_path(self, clip_id: str, suffix: str) -> Path:
        """``generated/<clip_id><suffix>``: the method's own output for a clip, as it reached the normaliser
        (``kdbench run --keep-generated``); a clip id that is not a plain file name is refused."""
        from .dataset import check_clip_id

        return self.root / "generated" / f"{check_clip_id(clip_id)}{suffix}"

    def keep_generated(self, clip_id: str, gen) -> dict[str, Any]:
        """Keep ``gen`` (a :class:`kdbench.method.Generated`) losslessly: the method's video file copied as it is
        (a baseline worker's FFV1), or its frames as ``.npy`` (``uint8[T,H,W,3]`` RGB). Written atomically; returns
        the ``generated`` record of the clip's event (file relative to the run folder, size, sha256)."""
        import shutil

        import numpy as np

        if gen.video_path is not None:
            dest = self.generated_path(clip_id, Path(gen.video_path).suffix or ".video")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dest) as tmp:
                shutil.copyfile(gen.video_path, tmp)
        else:
            dest = self.generated_path(clip_id, ".npy")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dest) as tmp, open(tmp, "wb") as f:
                np.save(f, np.asarray(gen.frames))
        return {"file": dest.relative_to(self.root).as_posix(), "size": dest.stat().st_size,
                "sha256": sha256_file(dest), "fps": gen.fps}

    def exists(self) -> bool:
        return self.config_path.is_file()

    def open(self, config: dict[str, Any]) -> RunStore:
        """Create the run folder for ``config`` (which carries ``config_hash``), or resume it."""
        if self.exists():
            old = self.config()
            if old.get("config_hash") != config["config_hash"] and not self.has_results():
                # a start that failed before any clip (a method not ready, a worker that did not load): the folder
                # holds nothing to keep, so the corrected command takes it over instead of being refused
                log.warning("%s: replacing the config of a run that holds no clip yet: %s", self.root,
                            "; ".join(config_diff(old, config)) or "hash differs")
                self.events_path.unlink(missing_ok=True)
                (self.root / "env.json").unlink(missing_ok=True)
                (self.root / "videos").mkdir(parents=True, exist_ok=True)
                write_json_atomic(self.config_path, config)
                return self
            if old.get("config_hash") != config["config_hash"]:
                diff = config_diff(old, config)
                raise KdbenchError(
                    f"{self.root} holds a run with a different config: {'; '.join(diff) or 'hash differs'}. "
                    "Re-run with the same settings to resume, choose another --out, or delete the folder to "
                    "start over")
            self.repair()
        else:
            (self.root / "videos").mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.config_path, config)
        return self

    def has_results(self) -> bool:
        """True when the folder holds any clip: an event of a clip (done, failed or not applicable) or a video."""
        videos = self.root / "videos"
        return bool(self.clip_events()) or (videos.is_dir() and any(videos.glob("*.mp4")))

    def repair(self) -> None:
        """Remove temporary files of killed runs and cut a torn last line off ``events.jsonl``."""
        self.clean_temp_files()
        self._repair_events()

    def clean_temp_files(self) -> None:
        """Remove the temporary files (``.<name>.tmp<pid>.<ext>``) of processes that no longer run."""
        for folder in (self.root, self.root / "videos", self.root / "generated"):
            for f in folder.glob(".*.tmp*") if folder.is_dir() else ():
                m = TMP_RE.match(f.name)
                if m and f.is_file() and not _pid_alive(int(m.group(1))):
                    log.warning("removing %s, left by a killed run", f)
                    f.unlink(missing_ok=True)

    def _repair_events(self) -> None:
        p = self.events_path
        if not p.is_file() or p.stat().st_size == 0:
            return
        data = p.read_bytes()
        if data.endswith(b"\n"):
            return
        keep = data[: data.rfind(b"\n") + 1]
        log.warning("%s: dropping a torn last line (%d bytes) left by a crash", p, len(data) - len(keep))
        with open(p, "r+b") as f:
            f.truncate(len(keep))
            f.flush()
            os.fsync(f.fileno())

    def config(self) -> dict[str, Any]:
        return read_json(self.config_path)

    def env(self) -> dict[str, Any]:
        p = self.root / "env.json"
        return read_json(p) if p.is_file() else {}

    def write_env(self, env: dict[str, Any]) -> None:
        write_json_atomic(self.root / "env.json", env)

    def append_event(self, event: dict[str, Any]) -> None:
        """Append one JSON line (one ``write`` in append mode) and fsync, so a crash loses at most that line.

        If the file does not end with a newline (a torn line that :meth:`repair` has not seen yet), a newline
        is written first, so the new event never lands on the torn line.
        """
        line = (json.dumps(event, default=str) + "\n").encode()
        fd = os.open(self.events_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
        except OSError as e:  # e.g. a full disk: os.write names no file
            raise naming(e, self.events_path) from e
        finally:
            os.close(fd)

    def events(self) -> list[dict[str, Any]]:
        """All complete events (a torn line from a crash is ignored)."""
        if not self.events_path.is_file():
            return []
        out = []
        for line in self.events_path.read_bytes().decode("utf-8", errors="replace").splitlines():
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(ev, dict):
                out.append(ev)
        return out

    def clip_events(self) -> dict[str, dict[str, Any]]:
        """The last event of each clip."""
        from .dataset import clip_id_problem

        out = {}
        for e in self.events():
            cid = e.get("clip_id")
            if cid is None:
                continue
            why = clip_id_problem(cid)
            if why:
                log.warning("%s: ignoring an event with a bad clip id: %s", self.events_path, why)
                continue
            out[cid] = e
        return out

    def video_record(self, clip_id: str) -> dict[str, Any]:
        """``video_size`` (bytes) and ``video_sha256`` of a finished clip's video, for its ``ok`` event."""
        p = self.video_path(clip_id)
        return {"video_size": p.stat().st_size, "video_sha256": sha256_file(p)}

    def video_problem(self, clip_id: str, event: dict[str, Any]) -> str | None:
        """Why the video of ``clip_id`` is not the one its ``ok`` event recorded, or None when it is."""
        p = self.video_path(clip_id)
        if not p.is_file():
            return f"its video {p} is missing"
        if "video_sha256" not in event:
            return "its event records no video checksum (written by an older kdbench)"
        size = p.stat().st_size
        if size != event.get("video_size"):
            return f"its video {p} is {size} bytes, the run wrote {event.get('video_size')}"
        if sha256_file(p) != event["video_sha256"]:
            return f"its video {p} changed since it was written (sha256 differs)"
        return None

    def done(self, config_hash: str) -> set[str]:
        """Clips finished under ``config_hash`` whose video is still the one their event recorded.

        A damaged, replaced or missing video is logged and left out, so the run generates it again.
        """
        out = set()
        for cid, e in self.clip_events().items():
            if e.get("status") != "ok" or e.get("config_hash") != config_hash:
                continue
            why = self.video_problem(cid, e)
            if why:
                log.warning("clip %s will be generated again: %s", cid, why)
            else:
                out.add(cid)
        return out


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``["device: 'cuda' → 'cpu'", "options.ddim_steps: 50 → 5"]``: every setting that differs."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        if not prefix and k in CONFIG_KEYS_IGNORED:
            continue
        name = f"{prefix}{k}"
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, prefix=f"{name}.")
        elif a != b:
            out.append(f"{name}: {a!r} → {b!r}")
    return out
