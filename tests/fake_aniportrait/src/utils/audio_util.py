import math
import os
import random
import wave

import numpy as np

# The real module imports librosa, whose pkg_resources import draws from Python's random: a caller that imports
# this module after seeding draws another Audio2Pose id than audio2vid.py, which imports it before it seeds.
random.random()


def prepare_audio_feature(wav_file, fps=30, sampling_rate=16000, wav2vec_model_path=None):
    assert os.path.isfile(os.path.join(wav2vec_model_path, "preprocessor_config.json"))
    with wave.open(str(wav_file)) as w:
        assert w.getframerate() == sampling_rate
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32)
    input_value = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    return {"audio_feature": input_value, "seq_len": math.ceil(len(input_value) / sampling_rate * fps)}
