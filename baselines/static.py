"""``static``: the reference image held for every frame, with the audio — the floor for motion and sync."""

from __future__ import annotations

import numpy as np

from kdbench import FPS
from kdbench.audio import n_video_frames
from kdbench.dataset import ClipSpec
from kdbench.method import Generated, Method, MethodInfo
from kdbench.registry import register_method


@register_method("static")
class StaticImage(Method):
    info = MethodInfo(
        name="static",
        description="The reference image repeated for the audio's duration (no motion at all): the lower bound.",
        paper_row="Static image",
        copies_input=True,
    )

    def generate(self, spec: ClipSpec, ref_image: np.ndarray, audio: np.ndarray) -> Generated:
        n = n_video_frames(len(audio))
        frames = np.broadcast_to(ref_image[None], (n, *ref_image.shape))
        return Generated(fps=FPS, frames=frames)
