import os

import numpy as np
import torchvision
from einops import rearrange


def save_videos_grid(videos, path, rescale=False, n_rows=6, fps=8):
    """As upstream (make_grid per frame, * 255, astype uint8), but the frames are kept as .npy, not encoded."""
    videos = rearrange(videos, "b c t h w -> t b c h w")
    outputs = []
    for x in videos:
        x = torchvision.utils.make_grid(x, nrow=n_rows)
        x = x.transpose(0, 1).transpose(1, 2).squeeze(-1)
        outputs.append((x * 255).numpy().astype(np.uint8))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path.replace(".mp4", ".npy"), np.stack(outputs))
    with open(path.replace(".mp4", ".fps"), "w") as f:
        f.write(str(fps))
