"""KDTalker's keypoint denoiser, as released (``model/temporaltrans/temptrans.py`` of chaolongy/KDTalker).

A temporal transformer over frame tokens: each token is one frame's 70-d normalised motion vector
``[scale, yaw, pitch, roll, tx, ty, tz, exp(63)]``. The sequence is ``[identity, reference, x_t(L)]``
(``L + 2`` tokens). Audio and the diffusion step enter through FiLM in ResNet blocks; the blocks
alternate with temporal self-attention (T5 relative position bias + interleaved RoPE on the first 12
of 64 head channels). Output: the epsilon prediction for every token ``(B, L+2, 70)``.

The module tree reproduces the official one key for key, including the parameters the forward pass
never uses (``positional_encoding.freq_bands``, ``block2.norm``), so ``KDTalker.pth['model']`` loads
with strict key matching once its ``point_model.model.`` prefix is removed. The arithmetic follows the
official code operation by operation, so equal weights and inputs give equal outputs on one device.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch
from torch import nn

from kdbench.errors import KdbenchError

MOTION_DIM = 70
AUDIO_DIM = 512
CKPT_PREFIX = "point_model.model."


class SinusoidalPosEmb(nn.Module):
    """Timestep ``t: [B]`` (int) -> ``[B, dim]``: ``[sin(t f_k), cos(t f_k)]``, f_k = 1e4^(-k/(dim/2-1))."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=x.device) * -(math.log(10000) / (half - 1)))
        emb = x[:, None] * freqs[None, :]
        return torch.cat((emb.sin(), emb.cos()), dim=-1)


class PositionalEncoding(nn.Module):
    """Holds the official (unused) ``freq_bands`` buffer ``2**linspace(1, 9, 10)`` so keys match."""

    def __init__(self, n_freqs: int = 10):
        super().__init__()
        self.register_buffer("freq_bands", 2 ** torch.linspace(1, n_freqs - 1, n_freqs))


class LayerNorm(nn.Module):
    """Official LayerNorm: biased variance, last dim, eps 1e-5, ``gamma``/``beta`` of shape (1,1,dim)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = torch.var(x, dim=-1, unbiased=False, keepdim=True)
        mean = torch.mean(x, dim=-1, keepdim=True)
        return (x - mean) / (var + self.eps).sqrt() * self.gamma + self.beta


class RelativePositionBias(nn.Module):
    """T5 bidirectional bucketed position bias: ``n`` -> ``[heads, n, n]`` added to attention logits."""

    def __init__(self, heads: int, num_buckets: int = 32, max_distance: int = 128):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)

    @staticmethod
    def bucket(
        relative_position: torch.Tensor, num_buckets: int = 32, max_distance: int = 128
    ) -> torch.Tensor:
        """Bucket index of ``relative_position = key - query`` (16 buckets per direction, 8 exact)."""
        n = -relative_position
        num_buckets //= 2
        ret = (n < 0).long() * num_buckets
        n = torch.abs(n)
        max_exact = num_buckets // 2
        is_small = n < max_exact
        val_if_large = (
            max_exact
            + (
                torch.log(n.float() / max_exact)
                / math.log(max_distance / max_exact)
                * (num_buckets - max_exact)
            ).long()
        )
        val_if_large = torch.clamp(val_if_large, max=num_buckets - 1)
        return ret + torch.where(is_small, n, val_if_large)

    def forward(self, n: int, device: torch.device | str) -> torch.Tensor:
        pos = torch.arange(n, dtype=torch.long, device=device)
        rel = pos[None, :] - pos[:, None]
        values = self.relative_attention_bias(self.bucket(rel, self.num_buckets, self.max_distance))
        return values.permute(2, 0, 1)


class RotaryEmbedding(nn.Module):
    """RoPE with the semantics of ``rotary-embedding-torch`` 0.3.0 (``freqs_for='lang'``, theta 10000).

    ``freqs = 1/10000^(arange(0, dim, 2)/dim)`` is a non-trainable parameter (one key per attention
    layer in the official state_dict, all the same object). Positions ``0..n-1`` run along the
    sequence axis (-2); each frequency is repeated for an interleaved channel pair; only the first
    ``dim`` channels are rotated, ``(x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin)``.
    """

    def __init__(self, dim: int, theta: float = 10000.0):
        super().__init__()
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        self.freqs = nn.Parameter(freqs, requires_grad=False)

    def angles(self, n: int, device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Rotation angles ``[n, dim]``: ``pos * freq``, each frequency repeated twice (interleaved)."""
        pos = torch.arange(n, device=device, dtype=dtype).type(self.freqs.dtype)
        ang = torch.einsum("..., f -> ... f", pos, self.freqs)
        return ang.repeat_interleave(2, dim=-1)

    @staticmethod
    def rotate_half(x: torch.Tensor) -> torch.Tensor:
        x = x.unflatten(-1, (-1, 2))
        x1, x2 = x.unbind(dim=-1)
        return torch.stack((-x2, x1), dim=-1).flatten(-2)

    @classmethod
    def apply(cls, angles: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Rotate the first ``angles.shape[-1]`` channels of ``t [..., n, d]`` by ``angles [n, rot]``."""
        rot = angles.shape[-1]
        angles = angles[-t.shape[-2] :, :].to(t)
        t_rot, t_pass = t[..., :rot], t[..., rot:]
        t_rot = (t_rot * angles.cos()) + (cls.rotate_half(t_rot) * angles.sin())
        return torch.cat((t_rot, t_pass), dim=-1)

    def rotate_queries_or_keys(self, t: torch.Tensor) -> torch.Tensor:
        return self.apply(self.angles(t.shape[-2], t.device, t.dtype), t)


class Attention(nn.Module):
    """Temporal multi-head self-attention: q pre-scaled by head_dim^-0.5, RoPE on q and k, additive bias."""

    def __init__(self, dim: int, heads: int, rotary_emb: RotaryEmbedding):
        super().__init__()
        self.num_heads = heads
        head_dim = dim // heads
        self.scale = head_dim**-0.5
        self.to_qkv = nn.Linear(dim, head_dim * heads * 3, bias=False)
        self.proj = nn.Linear(head_dim * heads, dim)
        self.rotary_emb = rotary_emb

    def forward(
        self, x: torch.Tensor, pos_bias: torch.Tensor | None = None, rope_angles: torch.Tensor | None = None
    ) -> torch.Tensor:
        q, k, v = (
            t.unflatten(-1, (self.num_heads, -1)).transpose(-3, -2) for t in self.to_qkv(x).chunk(3, dim=-1)
        )
        q = q * self.scale
        if rope_angles is None:
            rope_angles = self.rotary_emb.angles(q.shape[-2], q.device, q.dtype)
        q = self.rotary_emb.apply(rope_angles, q)
        k = self.rotary_emb.apply(rope_angles, k)
        sim = torch.einsum("... h i d, ... h j d -> ... h i j", q, k)
        if pos_bias is not None:
            sim = sim + pos_bias
        attn = sim.softmax(dim=-1)
        out = torch.einsum("... h i j, ... h j d -> ... h i d", attn, v)
        out = out.transpose(-3, -2).flatten(-2)
        return self.proj(out)


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.fn = fn
        self.norm = LayerNorm(dim)

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.fn(self.norm(x), **kwargs)


class Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.fn(x, **kwargs) + x


class Block(nn.Module):
    """Linear, then (only with FiLM) LayerNorm and ``x (1 + scale) + shift``, then SiLU."""

    def __init__(self, dim: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim_out)
        self.norm = LayerNorm(dim)
        self.act = nn.SiLU()

    def forward(
        self, x: torch.Tensor, scale_shift: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        x = self.proj(x)
        if scale_shift is not None:
            x = self.norm(x)
            scale, shift = scale_shift
            x = x * (scale + 1) + shift
        return self.act(x)


class ResnetBlock(nn.Module):
    """``block2(block1(x, FiLM(cond))) + x`` with ``(scale, shift) = Linear(SiLU(cond)).chunk(2)``."""

    def __init__(self, dim: int, dim_out: int, cond_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, dim_out * 2))
        self.block1 = Block(dim, dim_out)
        self.block2 = Block(dim_out, dim_out)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale_shift = self.mlp(cond).chunk(2, dim=-1)
        h = self.block1(x, scale_shift=scale_shift)
        h = self.block2(h)
        return h + x


class KDTalkerDenoiser(nn.Module):
    """The released ``SimpleTransModel``: 70-d motion tokens, width 768, 6 layers, 12 heads of 64.

    ``forward(inputs [B, n, 70], timesteps [B] (int, 0..999), context [B, n, 512]) -> eps [B, n, 70]``.
    """

    def __init__(
        self,
        motion_dim: int = MOTION_DIM,
        dim: int = 768,
        num_layers: int = 6,
        time_dim: int = 256,
        audio_dim: int = AUDIO_DIM,
    ):
        super().__init__()
        self.dim = dim
        self.time_mlp = nn.Sequential(
            SinusoidalPosEmb(dim), nn.Linear(dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )
        self.positional_encoding = PositionalEncoding(10)
        self.input_projection = nn.Linear(motion_dim, dim)
        heads = dim // 64
        rotary = RotaryEmbedding(min(32, heads))
        self.time_rel_pos_bias = RelativePositionBias(heads=heads, max_distance=128)
        cond_dim = audio_dim + time_dim
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    ResnetBlock(dim, dim, cond_dim),
                    ResnetBlock(dim, dim, cond_dim),
                    Residual(PreNorm(dim, Attention(dim, heads, rotary))),
                ]
            )
            for _ in range(num_layers)
        )
        self.output_projection = nn.Linear(dim, motion_dim)

    @property
    def rotary(self) -> RotaryEmbedding:
        return self.layers[0][2].fn.fn.rotary_emb

    def positional_terms(
        self, n: int, device: torch.device | str, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pos_bias [heads, n, n], rope_angles [n, 12])``: constant per sequence length."""
        return self.time_rel_pos_bias(n, device), self.rotary.angles(n, device, dtype)

    def time_embedding(self, timesteps: torch.Tensor) -> torch.Tensor:
        """``[B]`` integer steps -> ``[B, 256]``."""
        return self.time_mlp(timesteps)

    def forward(
        self,
        inputs: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor | None = None,
        positional: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        _, n, _ = inputs.shape
        x = self.input_projection(inputs)
        cond = self.time_embedding(timesteps)[:, None, :].expand(-1, n, -1)
        if context is not None:
            cond = torch.cat([cond, context], -1)
        pos_bias, angles = (
            positional if positional is not None else self.positional_terms(n, x.device, x.dtype)
        )
        for block1, block2, attn in self.layers:
            x = block1(x, cond)
            x = block2(x, cond)
            x = attn(x, pos_bias=pos_bias, rope_angles=angles)
        return self.output_projection(x)


# -- loading -------------------------------------------------------------------------------------------------
def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise :class:`KdbenchError` listing missing, unexpected and mis-shaped keys (strict matching)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} != model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:

        def fmt(keys: list[str]) -> str:
            return (
                ", ".join(keys[:20]) + (f" ... (+{len(keys) - 20} more)" if len(keys) > 20 else "") or "none"
            )

        raise KdbenchError(
            f"{what} does not match the official architecture: missing keys [{fmt(missing)}]; "
            f"unexpected keys [{fmt(unexpected)}]; shape mismatches [{fmt(shapes)}]"
        )


def torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """An official checkpoint, loaded without running code from it (:func:`kdbench.checkpoint.load_checkpoint`).

    The released ``KDTalker.pth`` may carry an OmegaConf ``cfg`` next to ``model`` (``main.py``): it comes
    back as an inert placeholder (only ``['model']`` is used); anything that would execute code is refused.
    """
    from kdbench.checkpoint import load_checkpoint

    return load_checkpoint(path, map_location=map_location)


def denoiser_state_dict(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The denoiser keys of ``KDTalker.pth``: ``ckpt['model']`` minus ``point_model.model.``.

    A bare state_dict (with or without the prefix) is accepted too. Keys outside the prefix are kept,
    so that the strict check reports them as unexpected.
    """
    state = (
        checkpoint["model"]
        if "model" in checkpoint and isinstance(checkpoint["model"], Mapping)
        else checkpoint
    )
    return {(k[len(CKPT_PREFIX) :] if k.startswith(CKPT_PREFIX) else k): v for k, v in state.items()}


def load_denoiser(
    source: str | os.PathLike | Mapping, device: str | torch.device = "cpu"
) -> KDTalkerDenoiser:
    """Build the denoiser and load ``KDTalker.pth`` (path or loaded dict), strict keys, eval mode."""
    checkpoint = torch_load(source) if isinstance(source, (str, os.PathLike)) else source
    state = denoiser_state_dict(checkpoint)
    model = KDTalkerDenoiser()
    check_state_dict(
        model, state, f"KDTalker checkpoint {source if isinstance(source, (str, os.PathLike)) else ''}"
    )
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)
