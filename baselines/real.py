"""``real``: the GT clip itself — the paper's "Real Video" row, the ceiling every metric is read against."""

from __future__ import annotations

import numpy as np

from kdbench.dataset import ClipSpec
from kdbench.errors import NotApplicable
from kdbench.method import Generated, Method, MethodInfo
from kdbench.registry import register_method


@register_method("real")
class RealVideo(Method):
    info = MethodInfo(
        name="real",
        description="The ground-truth clip (Table 1's 'Real Video' row). Needs a GT video per clip.",
        paper_row="Real Video",
        generates=False,
        copies_input=True,
    )

    def generate(self, spec: ClipSpec, ref_image: np.ndarray, audio: np.ndarray) -> Generated:
        if spec.gt_video is None:
            raise NotApplicable("no GT video for this clip: the `real` method can only replay GT clips")
        from kdbench.video import probe_video

        return Generated(fps=probe_video(spec.gt_video).fps, video_path=spec.gt_video)
