"""LivePortrait's four base networks, written so that the official checkpoints load with ``strict=True``.

KDTalker renders with LivePortrait (Guo et al. 2024, MIT licence): an appearance feature extractor F, a
motion extractor M (ConvNeXt-V2-tiny), a warping module W (dense motion network + 3-D hourglass) and a SPADE
decoder G.
The attribute names below follow the official module tree exactly, because they are the checkpoint keys
(``first.conv.weight``, ``detector.stages.2.8.grn.gamma``, ``G_middle_0.conv_0.weight_orig`` ...). The
hyper-parameters are those of LivePortrait's ``src/config/models.yaml`` (KDTalker vendors the same file).

Coordinates: keypoints live in the normalised volume ``[-1, 1]^3`` ordered (x right, y down, z inward), the
same order as ``torch.nn.functional.grid_sample`` grids for a (D, H, W) volume.

Everything here is inference-only: BatchNorm runs with its running statistics (call ``.eval()``), spectral
norm uses the stored singular vectors without power iteration, drop-path is absent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NUM_KP = 21          # implicit keypoints
NUM_BINS = 66        # head-pose bins of 3 degrees
FEATURE_SHAPE = (32, 16, 64, 64)   # f_s: channels, depth, height, width


# ----------------------------------------------------------------------------------------------------------
# Small building blocks (key names: conv / norm)
# ----------------------------------------------------------------------------------------------------------
class SameBlock2d(nn.Module):
    """Conv2d -> BatchNorm2d -> ReLU (or LeakyReLU(0.01)); keeps the spatial size."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding: int = 1, lrelu: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(cout, affine=True)
        self.ac = nn.LeakyReLU() if lrelu else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ac(self.norm(self.conv(x)))


class DownBlock2d(nn.Module):
    """Conv2d 3x3 -> BatchNorm2d -> ReLU -> 2x2 average pool (halves H and W)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(cout, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), kernel_size=2)


class ResBlock3d(nn.Module):
    """Pre-activation 3-D residual block: x + conv2(relu(bn2(conv1(relu(bn1(x))))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, kernel_size=3, padding=1)
        self.norm1 = nn.BatchNorm3d(channels, affine=True)
        self.norm2 = nn.BatchNorm3d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class DownBlock3d(nn.Module):
    """Conv3d 3^3 -> BatchNorm3d -> ReLU -> average pool (1, 2, 2): halves H and W, keeps the depth."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(cout, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(F.relu(self.norm(self.conv(x))), kernel_size=(1, 2, 2))


class UpBlock3d(nn.Module):
    """Nearest upsampling (1, 2, 2) -> Conv3d 3^3 -> BatchNorm3d -> ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(cout, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=(1, 2, 2))
        return F.relu(self.norm(self.conv(x)))


# ----------------------------------------------------------------------------------------------------------
# F: appearance feature extractor
# ----------------------------------------------------------------------------------------------------------
class AppearanceFeatureExtractor(nn.Module):
    """Image -> 3-D appearance feature volume.

    ``forward(img)``: img float[B,3,256,256] RGB in [0,1] -> f_s float[B,32,16,64,64].
    """

    def __init__(self, block_expansion: int = 64, max_features: int = 512, reshape_channel: int = 32,
                 reshape_depth: int = 16, num_resblocks: int = 6):
        super().__init__()
        self.reshape_channel = reshape_channel
        self.reshape_depth = reshape_depth
        self.first = SameBlock2d(3, block_expansion)
        self.down_blocks = nn.ModuleList([DownBlock2d(block_expansion, 2 * block_expansion),
                                          DownBlock2d(2 * block_expansion, 4 * block_expansion)])
        self.second = nn.Conv2d(4 * block_expansion, max_features, kernel_size=1)
        self.resblocks_3d = nn.Sequential()
        for i in range(num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(reshape_channel))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        out = self.first(img)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)                                            # B x 512 x 64 x 64
        b, _, h, w = out.shape
        return self.resblocks_3d(out.view(b, self.reshape_channel, self.reshape_depth, h, w))


# ----------------------------------------------------------------------------------------------------------
# M: motion extractor (ConvNeXt-V2-tiny with seven heads)
# ----------------------------------------------------------------------------------------------------------
class LayerNormChannelsFirst(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (biased variance, eps inside the square root)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GRN(nn.Module):
    """ConvNeXt-V2 global response normalisation on channels-last input [B,H,W,C]."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)                  # B x 1 x 1 x C
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    """Depthwise 7x7 conv -> LN -> Linear 4C -> GELU -> GRN -> Linear C, plus the residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtV2(nn.Module):
    """ConvNeXt-V2 backbone (global average pool + LayerNorm) with LivePortrait's motion heads."""

    def __init__(self, depths: tuple[int, ...] = (3, 3, 9, 3), dims: tuple[int, ...] = (96, 192, 384, 768),
                 num_kp: int = NUM_KP, num_bins: int = NUM_BINS):
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4), LayerNormChannelsFirst(dims[0]))]
            + [nn.Sequential(LayerNormChannelsFirst(dims[i]),
                             nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)) for i in range(3)])
        self.stages = nn.ModuleList([nn.Sequential(*[ConvNeXtV2Block(dims[i]) for _ in range(depths[i])])
                                     for i in range(4)])
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.fc_kp = nn.Linear(dims[-1], 3 * num_kp)
        self.fc_scale = nn.Linear(dims[-1], 1)
        self.fc_pitch = nn.Linear(dims[-1], num_bins)
        self.fc_yaw = nn.Linear(dims[-1], num_bins)
        self.fc_roll = nn.Linear(dims[-1], num_bins)
        self.fc_t = nn.Linear(dims[-1], 3)
        self.fc_exp = nn.Linear(dims[-1], 3 * num_kp)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        for down, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(down(x))
        x = self.norm(x.mean([-2, -1]))
        return {"pitch": self.fc_pitch(x), "yaw": self.fc_yaw(x), "roll": self.fc_roll(x), "t": self.fc_t(x),
                "exp": self.fc_exp(x), "scale": self.fc_scale(x), "kp": self.fc_kp(x)}


class MotionExtractor(nn.Module):
    """Image -> raw motion heads.

    ``forward(img)``: img float[B,3,256,256] RGB in [0,1] (no mean/std normalisation) -> dict of
    ``kp`` [B,63] canonical keypoints, ``exp`` [B,63] expression offsets, ``pitch``/``yaw``/``roll`` [B,66]
    bin logits, ``t`` [B,3] translation, ``scale`` [B,1].
    """

    def __init__(self, num_kp: int = NUM_KP):
        super().__init__()
        self.detector = ConvNeXtV2(num_kp=num_kp)

    def forward(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.detector(img)


# ----------------------------------------------------------------------------------------------------------
# W: warping module
# ----------------------------------------------------------------------------------------------------------
def make_coordinate_grid(d: int, h: int, w: int, ref: torch.Tensor) -> torch.Tensor:
    """Identity sampling grid float[d,h,w,3] with (x, y, z) each spanning [-1, 1] inclusive."""
    def axis(n: int) -> torch.Tensor:
        return 2 * (torch.arange(n, device=ref.device).to(ref.dtype) / (n - 1)) - 1

    z, y, x = torch.meshgrid(axis(d), axis(h), axis(w), indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def kp2gaussian(kp: torch.Tensor, grid: torch.Tensor, kp_variance: float) -> torch.Tensor:
    """Gaussian heat maps of keypoints: kp [B,K,3], grid [D,H,W,3] -> float[B,K,D,H,W]."""
    diff = grid[None, None] - kp[:, :, None, None, None, :]
    return torch.exp(-0.5 * (diff ** 2).sum(-1) / kp_variance)


class Hourglass3d(nn.Module):
    """3-D U-Net: ``encoder.down_blocks`` (pool H, W) and ``decoder.up_blocks`` with skip concatenation."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.down_blocks = nn.ModuleList([
            DownBlock3d(in_features if i == 0 else min(max_features, block_expansion * 2 ** i),
                        min(max_features, block_expansion * 2 ** (i + 1)))
            for i in range(num_blocks)])
        self.decoder = nn.Module()
        self.decoder.up_blocks = nn.ModuleList([
            UpBlock3d((1 if i == num_blocks - 1 else 2) * min(max_features, block_expansion * 2 ** (i + 1)),
                      min(max_features, block_expansion * 2 ** i))
            for i in reversed(range(num_blocks))])
        self.out_filters = block_expansion + in_features
        self.decoder.conv = nn.Conv3d(self.out_filters, self.out_filters, kernel_size=3, padding=1)
        self.decoder.norm = nn.BatchNorm3d(self.out_filters, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for block in self.encoder.down_blocks:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.decoder.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return F.relu(self.decoder.norm(self.decoder.conv(out)))


class DenseMotionNetwork(nn.Module):
    """Sparse keypoint motion -> dense 3-D deformation field and 2-D occlusion map."""

    def __init__(self, num_kp: int = NUM_KP, feature_channel: int = 32, reshape_depth: int = 16,
                 compress: int = 4, block_expansion: int = 32, num_blocks: int = 5, max_features: int = 1024):
        super().__init__()
        self.num_kp = num_kp
        self.hourglass = Hourglass3d(block_expansion, (num_kp + 1) * (compress + 1), num_blocks, max_features)
        out = self.hourglass.out_filters
        self.mask = nn.Conv3d(out, num_kp + 1, kernel_size=7, padding=3)
        self.compress = nn.Conv3d(feature_channel, compress, kernel_size=1)
        self.norm = nn.BatchNorm3d(compress, affine=True)
        self.occlusion = nn.Conv2d(out * reshape_depth, 1, kernel_size=7, padding=3)

    def sparse_motions(self, grid: torch.Tensor, kp_driving: torch.Tensor,
                       kp_source: torch.Tensor) -> torch.Tensor:
        """Per-keypoint backward flows float[B,1+K,D,H,W,3]: identity, then ``grid - kp_d + kp_s``."""
        b = kp_driving.shape[0]
        kp_d, kp_s = kp_driving[:, :, None, None, None, :], kp_source[:, :, None, None, None, :]
        per_kp = grid[None, None] - kp_d + kp_s
        identity = grid[None, None].expand(b, 1, *grid.shape)
        return torch.cat([identity, per_kp], dim=1)

    def forward(self, feature: torch.Tensor, kp_driving: torch.Tensor,
                kp_source: torch.Tensor) -> dict[str, torch.Tensor]:
        """feature [B,32,D,H,W], keypoints [B,K,3] -> deformation [B,D,H,W,3], occlusion_map [B,1,H,W],
        mask [B,1+K,D,H,W]."""
        b, _, d, h, w = feature.shape
        k1 = self.num_kp + 1
        feature = F.relu(self.norm(self.compress(feature)))                            # B x 4 x D x H x W
        grid = make_coordinate_grid(d, h, w, kp_source)
        motions = self.sparse_motions(grid, kp_driving, kp_source)                    # B x K1 x D x H x W x 3
        repeated = feature.unsqueeze(1).expand(b, k1, *feature.shape[1:]).reshape(b * k1, -1, d, h, w)
        deformed = F.grid_sample(repeated, motions.reshape(b * k1, d, h, w, 3), align_corners=False)
        deformed = deformed.reshape(b, k1, -1, d, h, w)                                  # B x K1 x 4 x D x H x W
        heat = kp2gaussian(kp_driving, grid, 0.01) - kp2gaussian(kp_source, grid, 0.01)
        heat = torch.cat([heat.new_zeros(b, 1, d, h, w), heat], dim=1).unsqueeze(2)   # B x K1 x 1 x D x H x W
        x = torch.cat([heat, deformed], dim=2).reshape(b, -1, d, h, w)                   # B x 110 x D x H x W
        prediction = self.hourglass(x)
        mask = F.softmax(self.mask(prediction), dim=1)                                 # B x K1 x D x H x W
        deformation = (motions.permute(0, 1, 5, 2, 3, 4) * mask.unsqueeze(2)).sum(dim=1)
        deformation = deformation.permute(0, 2, 3, 4, 1)                              # B x D x H x W x 3
        occlusion = torch.sigmoid(self.occlusion(prediction.reshape(b, -1, h, w)))
        return {"mask": mask, "deformation": deformation, "occlusion_map": occlusion}


class WarpingNetwork(nn.Module):
    """Warp the source feature volume from the source to the driving keypoints.

    ``forward(feature_3d, kp_driving, kp_source)``: f_s float[B,32,16,64,64], keypoints float[B,21,3] ->
    dict with ``out`` float[B,256,64,64] (occlusion applied), ``deformation`` [B,16,64,64,3],
    ``occlusion_map`` [B,1,64,64].
    """

    def __init__(self, num_kp: int = NUM_KP, block_expansion: int = 64, max_features: int = 512,
                 num_down_blocks: int = 2, reshape_channel: int = 32, reshape_depth: int = 16,
                 dense_motion_params: dict | None = None):
        super().__init__()
        self.dense_motion_network = DenseMotionNetwork(
            num_kp=num_kp, feature_channel=reshape_channel, reshape_depth=reshape_depth,
            **(dense_motion_params or {}))
        width = block_expansion * 2 ** num_down_blocks
        self.third = SameBlock2d(max_features, width, lrelu=True)
        self.fourth = nn.Conv2d(width, width, kernel_size=1)

    def forward(self, feature_3d: torch.Tensor, kp_driving: torch.Tensor,
                kp_source: torch.Tensor) -> dict[str, torch.Tensor]:
        dense = self.dense_motion_network(feature_3d, kp_driving, kp_source)
        out = F.grid_sample(feature_3d, dense["deformation"], align_corners=False)    # B x 32 x 16 x 64 x 64
        b, c, d, h, w = out.shape
        out = self.fourth(self.third(out.reshape(b, c * d, h, w)))
        out = out * dense["occlusion_map"]
        return {"out": out, "deformation": dense["deformation"], "occlusion_map": dense["occlusion_map"]}


# ----------------------------------------------------------------------------------------------------------
# G: SPADE decoder
# ----------------------------------------------------------------------------------------------------------
class SpectralNormConv2d(nn.Module):
    """Conv2d whose weight is ``weight_orig / sigma`` with ``sigma = u . (W v)`` (eval-mode spectral norm).

    Stores exactly what ``torch.nn.utils.spectral_norm`` stores (``weight_orig``, buffers ``weight_u``
    [out], ``weight_v`` [in*k*k], optional ``bias``) but never runs power iteration: the checkpoint's u and
    v are used as saved, which is what the official modules do in ``eval()``.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, padding: int = 0, bias: bool = True):
        super().__init__()
        self.padding = padding
        if bias:
            self.bias = nn.Parameter(torch.zeros(cout))
        else:
            self.register_parameter("bias", None)
        self.weight_orig = nn.Parameter(torch.empty(cout, cin, kernel_size, kernel_size))
        self.register_buffer("weight_u", torch.empty(cout))
        self.register_buffer("weight_v", torch.empty(cin * kernel_size * kernel_size))
        if not self.weight_orig.is_meta:   # meta modules only carry key names and shapes
            with torch.no_grad():
                nn.init.kaiming_uniform_(self.weight_orig, a=5 ** 0.5)
                self.weight_u.copy_(F.normalize(torch.randn(cout), dim=0, eps=1e-12))
                self.weight_v.copy_(F.normalize(torch.randn(self.weight_v.shape[0]), dim=0, eps=1e-12))

    def sigma(self) -> torch.Tensor:
        """Spectral-norm estimate (scalar) from the stored singular vectors."""
        w = self.weight_orig.reshape(self.weight_orig.shape[0], -1)
        return torch.dot(self.weight_u, torch.mv(w, self.weight_v))

    def weight(self) -> torch.Tensor:
        return self.weight_orig / self.sigma()

    @torch.no_grad()
    def power_iteration(self, n: int = 20) -> None:
        """Refresh u and v (only used to build realistic random checkpoints)."""
        w = self.weight_orig.reshape(self.weight_orig.shape[0], -1)
        for _ in range(n):
            self.weight_v.copy_(F.normalize(torch.mv(w.t(), self.weight_u), dim=0, eps=1e-12))
            self.weight_u.copy_(F.normalize(torch.mv(w, self.weight_v), dim=0, eps=1e-12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight(), self.bias, padding=self.padding)


class SPADE(nn.Module):
    """Spatially adaptive normalisation: InstanceNorm(x) * (1 + gamma(seg)) + beta(seg)."""

    def __init__(self, norm_nc: int, label_nc: int, hidden: int = 128):
        super().__init__()
        self.param_free_norm = nn.InstanceNorm2d(norm_nc, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, kernel_size=3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, norm_nc, kernel_size=3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, norm_nc, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """SPADE residual block with spectral-norm convolutions and a learned shortcut when fin != fout."""

    def __init__(self, fin: int, fout: int, label_nc: int):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmid = min(fin, fout)
        self.conv_0 = SpectralNormConv2d(fin, fmid, kernel_size=3, padding=1)
        self.conv_1 = SpectralNormConv2d(fmid, fout, kernel_size=3, padding=1)
        if self.learned_shortcut:
            self.conv_s = SpectralNormConv2d(fin, fout, kernel_size=1, bias=False)
        self.norm_0 = SPADE(fin, label_nc)
        self.norm_1 = SPADE(fmid, label_nc)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_nc)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return shortcut + dx


class SPADEDecoder(nn.Module):
    """Warped feature -> image.

    ``forward(feature)``: float[B,256,64,64] -> float[B,3,512,512] RGB in (0,1) (sigmoid output;
    ``upscale=2`` sub-pixel head).
    """

    def __init__(self, label_nc: int = 256, out_channels: int = 64):
        super().__init__()
        c = 2 * label_nc
        self.fc = nn.Conv2d(label_nc, c, kernel_size=3, padding=1)
        for i in range(6):
            setattr(self, f"G_middle_{i}", SPADEResnetBlock(c, c, label_nc))
        self.up_0 = SPADEResnetBlock(c, label_nc, label_nc)
        self.up_1 = SPADEResnetBlock(label_nc, out_channels, label_nc)
        self.conv_img = nn.Sequential(nn.Conv2d(out_channels, 3 * 4, kernel_size=3, padding=1),
                                      nn.PixelShuffle(2))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        x = self.fc(feature)
        for i in range(6):
            x = getattr(self, f"G_middle_{i}")(x, feature)
        x = self.up_0(F.interpolate(x, scale_factor=2), feature)
        x = self.up_1(F.interpolate(x, scale_factor=2), feature)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))


MODULES: dict[str, type[nn.Module]] = {
    "appearance": AppearanceFeatureExtractor,
    "motion": MotionExtractor,
    "warping": WarpingNetwork,
    "spade": SPADEDecoder,
}
