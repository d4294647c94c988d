"""A fake "upstream" talking-head model for the runtime tests (copied into a tiny git repository).

Like real upstream code it: loads a weight file from a path relative to the cwd, draws from numpy and Python's
``random`` without seeding them, writes ``<result_dir>/<YYYY_MM_DD_HH.MM.SS>.mp4`` at 25 fps with one frame per
640 audio samples, and leaves a file in the cwd.
"""

import os
import random
import sys
import time
import wave

import av
import numpy as np
from PIL import Image


def load_model(ckpt):
    """``ckpt``: ``.npy`` of 3 floats, an RGB offset added to every frame."""
    return np.load(ckpt)


def render(model, image_path, audio_path, result_dir, crash_below_frames=0):
    with wave.open(audio_path) as w:
        n_frames = w.getnframes() // 640
    if n_frames < crash_below_frames:
        print("fake upstream: crashing on purpose", file=sys.stderr, flush=True)
        os._exit(3)
    img = np.asarray(Image.open(image_path).convert("RGB"), dtype=np.float32)
    jitter = np.random.rand(n_frames) * 60.0
    blink = random.randrange(n_frames)
    with open("side_effect.txt", "w") as f:  # upstream scripts write into the cwd
        f.write("written next to the working directory\n")
    os.makedirs(result_dir, exist_ok=True)
    path = os.path.join(result_dir, time.strftime("%Y_%m_%d_%H.%M.%S") + ".mp4")
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = img.shape[1], img.shape[0], "yuv444p"
        for i in range(n_frames):
            frame = np.clip(img * 0.5 + model + jitter[i] - (80.0 if i == blink else 0.0), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
