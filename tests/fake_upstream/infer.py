"""The fake upstream's command line, like SadTalker's ``inference.py``: ``--image --audio --result_dir``."""

import argparse

from fake_talker import load_model, render

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--image", required=True)
    p.add_argument("--audio", required=True)
    p.add_argument("--result_dir", default="./results")
    p.add_argument("--ckpt", default="ckpt/model.npy")
    a = p.parse_args()
    print(render(load_model(a.ckpt), a.image, a.audio, a.result_dir))
