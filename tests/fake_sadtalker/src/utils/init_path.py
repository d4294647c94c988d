"""Fake ``src/utils/init_path.py``: upstream's checkpoint paths for size 256 with safetensors (the load order only)."""
import os


def init_path(checkpoint_dir, config_dir, size=256, old_version=False, preprocess="crop"):
    return {"checkpoint": os.path.join(checkpoint_dir, f"SadTalker_V0.0.2_{size}.safetensors"),
            "mappingnet_checkpoint": os.path.join(checkpoint_dir, "mapping_00229-model.pth.tar"),
            "use_safetensor": True, "dir_of_BFM_fitting": os.path.join(config_dir)}
