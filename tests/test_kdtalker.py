"""KDTalker diffusion side: strict loading, equivalences (RoPE, DDIM, mel, Kalman), windows, seeding."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from baselines.kdtalker import pipeline as P
from baselines.kdtalker.audio import (
    audio_features,
    int16_to_float,
    load_audio_encoder,
    mel_filterbank,
    mel_windows,
    melspectrogram,
)
from baselines.kdtalker.ddim import DDIMSchedule, ddim_timesteps
from baselines.kdtalker.denoiser import KDTalkerDenoiser, RelativePositionBias, RotaryEmbedding, load_denoiser
from baselines.kdtalker.random_weights import random_wav2lip_checkpoint
from kdbench.errors import ClipFailure, KdbenchError

KDTALKER_PARAMS = 42_926_284  # official get_model(), the shared RoPE frequencies counted once


# -- official key tables (from chaolongy/KDTalker's module trees, written out independently) -----------------
def official_denoiser_shapes() -> dict[str, tuple[int, ...]]:
    """The 166 keys of ``KDTalker.pth['model']`` and their shapes."""
    s: dict[str, tuple[int, ...]] = {
        "time_mlp.1.weight": (256, 768),
        "time_mlp.1.bias": (256,),
        "time_mlp.3.weight": (256, 256),
        "time_mlp.3.bias": (256,),
        "positional_encoding.freq_bands": (10,),
        "input_projection.weight": (768, 70),
        "input_projection.bias": (768,),
        "time_rel_pos_bias.relative_attention_bias.weight": (32, 12),
        "output_projection.weight": (70, 768),
        "output_projection.bias": (70,),
    }
    for i in range(6):
        for j in (0, 1):
            s[f"layers.{i}.{j}.mlp.1.weight"], s[f"layers.{i}.{j}.mlp.1.bias"] = (1536, 768), (1536,)
            for b in ("block1", "block2"):
                s[f"layers.{i}.{j}.{b}.proj.weight"], s[f"layers.{i}.{j}.{b}.proj.bias"] = (768, 768), (768,)
                s[f"layers.{i}.{j}.{b}.norm.gamma"] = s[f"layers.{i}.{j}.{b}.norm.beta"] = (1, 1, 768)
        s[f"layers.{i}.2.fn.fn.to_qkv.weight"] = (2304, 768)
        s[f"layers.{i}.2.fn.fn.proj.weight"], s[f"layers.{i}.2.fn.fn.proj.bias"] = (768, 768), (768,)
        s[f"layers.{i}.2.fn.fn.rotary_emb.freqs"] = (6,)
        s[f"layers.{i}.2.fn.norm.gamma"] = s[f"layers.{i}.2.fn.norm.beta"] = (1, 1, 768)
    return {"point_model.model." + k: v for k, v in s.items()}


def official_audio_encoder_shapes() -> dict[str, tuple[int, ...]]:
    """The 91 ``module.audio_encoder.*`` keys of ``wav2lip.pth['state_dict']``."""
    plan = [
        (1, 32, 3),
        (32, 32, 3),
        (32, 32, 3),
        (32, 64, 3),
        (64, 64, 3),
        (64, 64, 3),
        (64, 128, 3),
        (128, 128, 3),
        (128, 128, 3),
        (128, 256, 3),
        (256, 256, 3),
        (256, 512, 3),
        (512, 512, 1),
    ]
    s: dict[str, tuple[int, ...]] = {}
    for i, (cin, cout, k) in enumerate(plan):
        pre = f"module.audio_encoder.{i}.conv_block."
        s[pre + "0.weight"], s[pre + "0.bias"] = (cout, cin, k, k), (cout,)
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            s[pre + "1." + leaf] = (cout,)
        s[pre + "1.num_batches_tracked"] = ()
    return s


def table_checkpoint(seed: int = 0) -> dict:
    """A random ``KDTalker.pth`` from the official table (RoPE freqs and freq_bands as upstream)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in official_denoiser_shapes().items():
        if k.endswith("rotary_emb.freqs"):
            state[k] = 1.0 / (10000 ** (torch.arange(0, 12, 2).float() / 12))
        elif k.endswith("freq_bands"):
            state[k] = 2 ** torch.linspace(1, 9, 10)
        elif k.endswith("gamma"):
            state[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[k] = 0.03 * torch.randn(shape, generator=g)
    return {"model": state, "step": 0}


@pytest.fixture(scope="module")
def checkpoint() -> dict:
    return table_checkpoint(0)


@pytest.fixture(scope="module")
def denoiser(checkpoint) -> KDTalkerDenoiser:
    return load_denoiser(checkpoint)


@pytest.fixture(scope="module")
def norm() -> P.MotionNorm:
    from kdbench.hdtf_mini import hdtf_mini_root

    return P.MotionNorm.from_npz(hdtf_mini_root().parent / "kdtalker" / "norm.npz")


# -- loading -------------------------------------------------------------------------------------------------
def test_denoiser_loads_official_keys_strictly(tmp_path, checkpoint, denoiser):
    assert len(checkpoint["model"]) == 166
    path = tmp_path / "KDTalker.pth"
    torch.save(checkpoint, path)
    model = load_denoiser(path)
    assert sum(p.numel() for p in model.parameters()) == KDTALKER_PARAMS
    sd = model.state_dict()
    for k, v in checkpoint["model"].items():
        assert torch.equal(sd[k.removeprefix("point_model.model.")], v), k


def test_denoiser_wrong_keys_are_listed(checkpoint):
    state = dict(checkpoint["model"])
    del state["point_model.model.layers.3.1.block2.norm.beta"]
    state["point_model.model.layers.3.1.extra.weight"] = torch.zeros(3)
    state["point_model.model.output_projection.bias"] = torch.zeros(71)
    with pytest.raises(KdbenchError) as e:
        load_denoiser({"model": state})
    msg = str(e.value)
    assert "layers.3.1.block2.norm.beta" in msg and "layers.3.1.extra.weight" in msg
    assert "output_projection.bias: checkpoint (71,) != model (70,)" in msg


def test_audio_encoder_loads_wav2lip_checkpoint(tmp_path):
    ckpt = random_wav2lip_checkpoint(1)
    enc_keys = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if "audio_encoder" in k}
    assert enc_keys == official_audio_encoder_shapes()
    torch.save(ckpt, tmp_path / "wav2lip.pth")
    enc = load_audio_encoder(tmp_path / "wav2lip.pth")
    assert not enc.training
    out = enc.encode(torch.randn(5, 80, 16))
    assert out.shape == (5, 512) and (out >= 0).all() and out.abs().sum() > 0
    broken = {
        "state_dict": {k: v for k, v in ckpt["state_dict"].items() if ".12.conv_block.1.running_var" not in k}
    }
    with pytest.raises(KdbenchError, match=r"12\.conv_block\.1\.running_var"):
        load_audio_encoder(broken)
    with pytest.raises(KdbenchError, match="audio_encoder"):
        load_audio_encoder({"state_dict": {"module.output_block.1.weight": torch.zeros(1)}})


# -- the denoiser against a restatement of the official forward (einops + rotary-embedding-torch) ------------
def reference_forward(sd: dict, x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """``SimpleTransModel.forward`` of temptrans.py, written with the reference packages."""
    import torch.nn.functional as F
    from einops import rearrange
    from rotary_embedding_torch import RotaryEmbedding as RefRope

    def lin(h, name, bias=True):
        return F.linear(h, sd[name + ".weight"], sd[name + ".bias"] if bias else None)

    def ln(h, name):
        var = torch.var(h, dim=-1, unbiased=False, keepdim=True)
        return (h - h.mean(-1, keepdim=True)) / (var + 1e-5).sqrt() * sd[name + ".gamma"] + sd[name + ".beta"]

    rope = RefRope(12)
    rope.freqs.data.copy_(sd["layers.0.2.fn.fn.rotary_emb.freqs"])
    half = 384
    f = torch.exp(torch.arange(half) * -(math.log(10000) / (half - 1)))
    e = t[:, None] * f[None]
    temb = lin(F.silu(lin(torch.cat((e.sin(), e.cos()), -1), "time_mlp.1")), "time_mlp.3")
    n = x.shape[1]
    cond = torch.cat([temb[:, None].expand(-1, n, -1), ctx], -1)
    pos = torch.arange(n)
    bucket = RelativePositionBias.bucket(pos[None, :] - pos[:, None])
    bias = rearrange(
        F.embedding(bucket, sd["time_rel_pos_bias.relative_attention_bias.weight"]), "i j h -> h i j"
    )
    h = lin(x, "input_projection")
    for i in range(6):
        for j in (0, 1):
            p = f"layers.{i}.{j}"
            scale, shift = lin(F.silu(cond), p + ".mlp.1").chunk(2, -1)
            a = F.silu(ln(lin(h, p + ".block1.proj"), p + ".block1.norm") * (scale + 1) + shift)
            h = F.silu(lin(a, p + ".block2.proj")) + h
        p = f"layers.{i}.2.fn"
        q, k, v = (
            rearrange(z, "b n (h d) -> b h n d", h=12)
            for z in lin(ln(h, p + ".norm"), p + ".fn.to_qkv", bias=False).chunk(3, -1)
        )
        q = rope.rotate_queries_or_keys(q * 64**-0.5)
        k = rope.rotate_queries_or_keys(k)
        attn = (torch.einsum("bhid,bhjd->bhij", q, k) + bias).softmax(-1)
        h = (
            lin(rearrange(torch.einsum("bhij,bhjd->bhid", attn, v), "b h n d -> b n (h d)"), p + ".fn.proj")
            + h
        )
    return lin(h, "output_projection")


def test_denoiser_matches_official_forward(checkpoint, denoiser):
    sd = {k.removeprefix("point_model.model."): v for k, v in checkpoint["model"].items()}
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(1, 66, 70, generator=g), torch.randn(1, 66, 512, generator=g).relu()
    t = torch.tensor([980])
    with torch.no_grad():
        got = denoiser(x, t, ctx)
        want = reference_forward(sd, x, t, ctx)
    assert got.shape == (1, 66, 70)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert got.abs().mean() > 0.1  # a real signal, not a zero output projection


def test_rope_matches_rotary_embedding_torch():
    from rotary_embedding_torch import RotaryEmbedding as RefRope

    ref, mine = RefRope(12), RotaryEmbedding(12)
    torch.testing.assert_close(mine.freqs, ref.freqs, rtol=0, atol=0)
    x = torch.randn(1, 12, 66, 64)
    assert torch.equal(mine.rotate_queries_or_keys(x), ref.rotate_queries_or_keys(x))
    rotated = mine.rotate_queries_or_keys(x)
    assert torch.equal(rotated[..., 12:], x[..., 12:])  # partial: only 12 of 64 channels turn
    assert torch.equal(rotated[..., 0, :], x[..., 0, :])  # position 0 is not rotated
    # interleaved pairs: channels (0, 1) at position p rotate by p * freq_0 = p radians
    c, s = math.cos(5.0), math.sin(5.0)
    torch.testing.assert_close(rotated[0, 0, 5, 0], x[0, 0, 5, 0] * c - x[0, 0, 5, 1] * s)
    torch.testing.assert_close(rotated[0, 0, 5, 1], x[0, 0, 5, 1] * c + x[0, 0, 5, 0] * s)


def test_relative_position_buckets_t5():
    rel = torch.tensor([0, -1, -7, -8, -12, -16, -64, -127, -500, 1, 7, 8, 127])
    # n = -rel; keys before the query (rel < 0) use buckets 0..15, after it 16..31; 8 exact, log-spaced to 128
    want = [0, 1, 7, 8, 9, 10, 14, 15, 15, 17, 23, 24, 31]
    assert RelativePositionBias.bucket(rel).tolist() == want


# -- DDIM ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [50, 5, 2, 7, 1])
def test_ddim_matches_diffusers(steps):
    from diffusers import DDIMScheduler

    ref = DDIMScheduler(beta_start=1e-5, beta_end=8e-3, beta_schedule="linear", clip_sample=False)
    ref.set_timesteps(steps)
    mine = DDIMSchedule(steps)
    assert mine.timesteps.tolist() == ref.timesteps.tolist()
    if steps == 50:
        assert mine.timesteps.tolist() == list(range(980, -1, -20))
    torch.testing.assert_close(mine.alphas_cumprod, ref.alphas_cumprod, rtol=0, atol=0)
    g = torch.Generator().manual_seed(steps)
    x = torch.randn(1, 64, 70, generator=g)
    for t in mine.timesteps:
        eps = torch.randn(1, 64, 70, generator=g)
        want = ref.step(eps, int(t), x, eta=0.0).prev_sample
        x_mine = mine.step(eps, int(t), x)
        assert torch.equal(x_mine, want), int(t)
        x = want


def test_ddim_rejects_bad_step_counts():
    with pytest.raises(ValueError):
        ddim_timesteps(0)
    assert math.isclose(float(DDIMSchedule(50).alphas_cumprod[980]), 0.0210, abs_tol=5e-4)


# -- audio ---------------------------------------------------------------------------------------------------
def reference_mel_windows(wav: np.ndarray) -> np.ndarray:
    """Wav2Lip's audio.melspectrogram + KDTalker's per-frame windowing, with librosa and scipy as upstream."""
    import librosa
    from scipy import signal

    n = int(len(wav) / 640.0)
    wav = wav[: int(n * 640.0)]
    d = librosa.stft(y=signal.lfilter([1, -0.97], [1], wav), n_fft=800, hop_length=200, win_length=800)
    basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    s = 20 * np.log10(np.maximum(np.exp(-100 / 20 * np.log(10)), np.dot(basis, np.abs(d)))) - 20
    mel = np.clip(8 * ((s + 100) / 100) - 4, -4, 4).T
    out = []
    for i in range(n):
        start = int(80.0 * ((i - 2) / float(25)))
        seq = [min(max(k, 0), mel.shape[0] - 1) for k in range(start, start + 16)]
        out.append(mel[seq, :].T)
    return np.asarray(out)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    from kdbench.audio import read_audio
    from kdbench.hdtf_mini import hdtf_mini_root

    return read_audio(hdtf_mini_root() / "audio" / "WDA_BenCardin1_000.wav")[: 2 * 16000 + 333]


def test_mel_matches_reference_recipe(speech):
    import librosa

    wav = int16_to_float(speech)
    np.testing.assert_array_equal(
        mel_filterbank(), librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    )
    got, want = mel_windows(wav), reference_mel_windows(wav)
    assert got.shape == (50, 80, 16) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert got.min() >= -4 and got.max() <= 4 and got.std() > 0.5
    # frame 0's window starts 6 mel frames early (clamped to 0), frame 10's at int(80 * 8 / 25) = 25
    mel = melspectrogram(wav[: 50 * 640]).T
    np.testing.assert_allclose(got[0, :, 0], mel[0], atol=1e-6)
    np.testing.assert_allclose(got[0, :, 6], mel[0], atol=1e-6)
    np.testing.assert_allclose(got[10, :, 0], mel[25], atol=1e-6)


def test_audio_features_shape(speech):
    enc = load_audio_encoder(random_wav2lip_checkpoint(0))
    feats = audio_features(int16_to_float(speech), enc)
    assert feats.shape == (50, 512) and feats.dtype == torch.float32


def test_prepare_audio():
    with pytest.raises(ClipFailure, match="at least 1 s"):
        P.prepare_audio(np.zeros(15999, np.int16))
    mono = np.arange(-16000, 16000, dtype=np.int16)
    np.testing.assert_array_equal(P.prepare_audio(mono), mono.astype(np.float32) / 32768)
    stereo = np.stack([mono, np.zeros_like(mono)], 1)
    np.testing.assert_array_equal(P.prepare_audio(stereo), (mono.astype(np.float32) / 32768) / 2)
    with pytest.raises(KdbenchError):
        P.prepare_audio(np.zeros((2, 2, 20000), np.int16))


# -- windows, tokens, seeding, smoothing ---------------------------------------------------------------------
def test_padding_follows_upstream():
    f = np.arange(75)[:, None] * np.ones((1, 2))
    padded, pad = P.pad_audio_features(f)
    assert pad == 53 and padded.shape[0] == 128 and np.array_equal(padded[75:, 0], np.arange(53))
    assert P.window_starts(128) == [0, 64]
    assert P.pad_audio_features(np.zeros((128, 2)))[1] == 0
    # clips under 32 frames: upstream appends only what exists (one window of 2N frames)
    short, pad = P.pad_audio_features(np.zeros((30, 2)))
    assert pad == 34 and short.shape[0] == 60 and P.window_starts(60) == [0]


def test_source_tokens_layout(norm):
    rng = np.random.default_rng(0)
    info = {
        "scale": np.float32([[1.7]]),
        "yaw": np.float32([[10.0]]),
        "pitch": np.float32([[-3.0]]),
        "roll": np.float32([[2.0]]),
        "t": rng.normal(0, 0.05, (1, 3)).astype(np.float32),
        "exp": rng.normal(0, 0.01, (1, 63)).astype(np.float32),
        "kp": rng.normal(0, 0.1, (1, 63)).astype(np.float32),
    }
    ref, ori = P.source_tokens(info, norm)
    assert ref.shape == ori.shape == (70,) and ref.dtype == ori.dtype == np.float32
    assert ref[1] == np.float32(
        (np.float32(10.0) - norm.mean["yaw"][0]) / norm.std["yaw"][0]
    )  # yaw before pitch
    assert ref[2] == np.float32((np.float32(-3.0) - norm.mean["pitch"][0]) / norm.std["pitch"][0])
    np.testing.assert_array_equal(ref[7:], ((info["exp"] - norm.mean["exp"]) / norm.std["exp"])[0])
    assert not ori[:7].any()
    np.testing.assert_array_equal(ori[7:], ((info["kp"] - norm.mean["kp"]) / norm.std["kp"])[0])
    m = P.denormalize_motion(np.stack([ref, ref]), norm)
    np.testing.assert_allclose(m["yaw"], [[10.0], [10.0]], rtol=1e-5)
    np.testing.assert_allclose(m["exp"][0], info["exp"][0], atol=1e-6)
    assert m["scale"].shape == (2,) and m["t"].shape == (2, 3)


def test_noise_is_drawn_as_official_after_manual_seed():
    torch.manual_seed(123)
    want = [torch.randn(1, 64, 70, 3)[..., 0], torch.randn(1, 64, 70, 3)[..., 0]]
    g = torch.Generator().manual_seed(123)
    got = [P.initial_noise(g, 64, "cpu"), P.initial_noise(g, 64, "cpu")]
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_windows_are_autoregressive_and_seeded(denoiser):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(70, 512, generator=g).relu()
    ref, ori = torch.randn(70, generator=g).numpy(), torch.randn(70, generator=g).numpy()
    motion = P.sample_motion(denoiser, feats, ref, ori, num_steps=2, seed=11)
    assert motion.shape == (70, 70) and motion.dtype == np.float32 and np.isfinite(motion).all()
    # by hand: window k starts from the seed's k-th draw; window 2 is conditioned on window 1's last frame
    # and sees the audio wrapped around (frames 64..69, then 0..57)
    gen = torch.Generator().manual_seed(11)
    sched, ori_t = DDIMSchedule(2), torch.from_numpy(ori)[None]
    x1 = P.sample_window(
        denoiser, sched, P.initial_noise(gen, 64, "cpu"), ori_t, torch.from_numpy(ref)[None], feats[:64][None]
    )
    x2 = P.sample_window(
        denoiser,
        sched,
        P.initial_noise(gen, 64, "cpu"),
        ori_t,
        x1[:, -1],
        torch.cat([feats[64:], feats[:58]])[None],
    )
    x = torch.cat([x1, x2], 1)[0, :70].numpy()
    np.testing.assert_array_equal(motion, np.mean(np.stack([x, x, x], -1), -1))
    assert not np.array_equal(x1[0, :6].numpy(), x2[0, :6].numpy())


def test_kalman_matches_pykalman():
    from pykalman import KalmanFilter

    rng = np.random.default_rng(0)
    for dim in (1, 3, 7):
        seq = np.cumsum(rng.normal(0, 1, (30, dim)), 0).astype(np.float32)
        kf = KalmanFilter(
            initial_state_mean=seq[0],
            transition_covariance=0.05 * np.eye(dim),
            observation_covariance=0.001 * np.eye(dim),
        )
        want = kf.smooth(seq)[0]
        np.testing.assert_allclose(P.kalman_smooth(seq), want, rtol=0, atol=1e-9)
    assert np.abs(P.kalman_smooth(seq) - seq).max() > 1e-4  # it does smooth


# -- the method class ----------------------------------------------------------------------------------------
def test_import_is_light_and_options_are_checked():
    code = (
        "import sys, baselines.kdtalker as k; assert 'torch' not in sys.modules; print(k.KDTalker.info.name)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "kdtalker"
    from baselines.kdtalker import KDTalker
    from kdbench.registry import METHODS

    assert METHODS.get("kdtalker") is KDTalker
    with pytest.raises(KdbenchError, match="no option"):
        KDTalker(options={"steps": 3})
    with pytest.raises(KdbenchError, match="dtype"):
        KDTalker(options={"dtype": "int8"})._checked_options()
    with pytest.raises(KdbenchError, match="ddim_steps"):
        KDTalker(options={"ddim_steps": 0})._checked_options()
    assert KDTalker(options={"ddim_steps": "5", "smoothing": "false"})._checked_options() == {
        "ddim_steps": 5,
        "batch_size": 16,
        "dtype": "fp32",
        "smoothing": False,
        "cuda_graphs": True,
        "device_uint8": True,
        "channels_last": False,
        "compile": "none",
    }
