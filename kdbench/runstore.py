"""The run store: everything one ``kdbench run`` produced, crash-safe and resumable.

    RUN_DIR/
      config.json    resolved config (method, options, dataset + manifest_id, seed, device) and its hash
      env.json       versions, git hash, device/GPU/driver, weight checksums
      videos/<clip_id>.mp4   normalised outputs (written atomically)
      events.jsonl   one line per event: model load, and per clip frames, seconds, peak memory, error

Re-running with the same config skips clips whose last event is ``ok`` and whose video exists;
a different config in the same folder is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import KdbenchError
from .files import atomic_path


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
        return self.root / "videos" / f"{clip_id}.mp4"

    def exists(self) -> bool:
        return self.config_path.is_file()

    def open(self, config: dict[str, Any]) -> RunStore:
        """Create the run folder for ``config`` (which carries ``config_hash``), or resume it."""
        if self.exists():
            old = self.config()
            if old.get("config_hash") != config["config_hash"]:
                raise KdbenchError(
                    f"{self.root} holds a run with a different config (hash {old.get('config_hash')} vs "
                    f"{config['config_hash']}); choose another --out, or delete the folder to start over")
        else:
            (self.root / "videos").mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.config_path, config)
        return self

    def config(self) -> dict[str, Any]:
        return read_json(self.config_path)

    def env(self) -> dict[str, Any]:
        p = self.root / "env.json"
        return read_json(p) if p.is_file() else {}

    def write_env(self, env: dict[str, Any]) -> None:
        write_json_atomic(self.root / "env.json", env)

    def append_event(self, event: dict[str, Any]) -> None:
        """Append one JSON line and fsync, so a crash loses at most the line being written."""
        line = json.dumps(event, default=str) + "\n"
        with open(self.events_path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def events(self) -> list[dict[str, Any]]:
        """All complete events (a torn last line from a crash is ignored)."""
        if not self.events_path.is_file():
            return []
        out = []
        for line in self.events_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def clip_events(self) -> dict[str, dict[str, Any]]:
        """The last event of each clip."""
        return {e["clip_id"]: e for e in self.events() if e.get("clip_id")}

    def done(self, config_hash: str) -> set[str]:
        """Clips finished under ``config_hash`` whose video is on disk."""
        return {cid for cid, e in self.clip_events().items()
                if e.get("status") == "ok" and e.get("config_hash") == config_hash and self.video_path(cid).is_file()}
