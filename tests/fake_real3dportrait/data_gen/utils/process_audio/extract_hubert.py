import os

import numpy as np
import soundfile as sf
import torch
from transformers import HubertModel, Wav2Vec2Processor

wav2vec2_processor = None
hubert_model = None


def get_hubert_from_16k_wav(wav_16k_name):
    speech_16k, _ = sf.read(wav_16k_name)
    return get_hubert_from_16k_speech(speech_16k)


@torch.no_grad()
def get_hubert_from_16k_speech(speech, device="cuda:0"):
    global hubert_model, wav2vec2_processor
    local_path = '/home/tiger/.cache/huggingface/hub/models--facebook--hubert-large-ls960-ft/snapshots/x'
    if hubert_model is None:
        hubert_model = HubertModel.from_pretrained(local_path if os.path.exists(local_path)
                                                   else "facebook/hubert-large-ls960-ft")
    hubert_model = hubert_model.to(device)
    if wav2vec2_processor is None:
        wav2vec2_processor = Wav2Vec2Processor.from_pretrained(local_path if os.path.exists(local_path)
                                                               else "facebook/hubert-large-ls960-ft")
    if speech.ndim == 2:
        speech = speech[:, 0]
    input_values = wav2vec2_processor(speech, return_tensors="pt", sampling_rate=16000).input_values.to(device)
    return hubert_model(input_values).last_hidden_state[0].cpu()


def pad8(x: np.ndarray) -> np.ndarray:
    return np.pad(x, ((0, (-len(x)) % 8), (0, 0)))
