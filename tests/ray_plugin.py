"""Test-only methods for the Ray executor tests, registered through ``KDBENCH_PLUGINS=tests.ray_plugin`` so that
Ray's worker processes (which import kdbench afresh) know them too."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from kdbench import FPS
from kdbench.audio import n_video_frames
from kdbench.method import Generated, Method, MethodInfo
from kdbench.registry import register_method


def _frames(spec, audio) -> np.ndarray:
    """One grey level per clip (from its id), one frame per audio frame, 32x32."""
    level = sum(map(ord, spec.clip_id)) % 200 + 20
    return np.full((n_video_frames(len(audio)), 32, 32, 3), level, np.uint8)


@register_method("_ray_crashy")
class CrashyMethod(Method):
    """Kills its own process the first time it sees ``crash_clip`` (a marker file remembers), like a segfault."""

    info = MethodInfo(name="_ray_crashy", description="test double: crashes its worker once")
    default_options = {"crash_clip": None, "marker": None}

    def generate(self, spec, ref_image, audio):
        marker = Path(self.options["marker"]) if self.options["marker"] else None
        if spec.clip_id == self.options["crash_clip"] and marker is not None and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return Generated(fps=float(FPS), frames=_frames(spec, audio))


@register_method("_ray_slow")
class SlowMethod(Method):
    """Sleeps ``delay`` seconds per clip (a driver can be killed while clips are in flight)."""

    info = MethodInfo(name="_ray_slow", description="test double: slow generation")
    default_options = {"delay": 1.0}

    def generate(self, spec, ref_image, audio):
        time.sleep(float(self.options["delay"]))
        return Generated(fps=float(FPS), frames=_frames(spec, audio))
