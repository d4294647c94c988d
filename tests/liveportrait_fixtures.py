"""A LivePortrait with the same code but narrow random networks, for tests/test_liveportrait.py and
tests/test_kdtalker_fast.py (needs torch)."""

from __future__ import annotations

import torch

from baselines.kdtalker import liveportrait as LP
from baselines.kdtalker import liveportrait_nets as N


def tiny_liveportrait(trained_batchnorm: bool = False) -> tuple[LP.LivePortrait, LP.SourceState]:
    """Narrow random networks on a ``[1,32,4,8,8]`` volume (fast on a CPU) and a frontal source state.

    Warping: hourglass of 2 levels, 4-16 channels, depth 4; decoder: 16 label channels; spectral norms with the
    stored ``u, v`` of a trained checkpoint (sigma = top singular value). ``trained_batchnorm``: BatchNorm running
    statistics away from 0/1, as trained ones are. Seeded; the global RNG is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        dense = {"block_expansion": 4, "max_features": 16, "num_blocks": 2}
        warping = N.WarpingNetwork(block_expansion=4, max_features=128, reshape_depth=4, dense_motion_params=dense)
        spade = N.SPADEDecoder(label_nc=16, out_channels=8)
        for mod in spade.modules():
            if isinstance(mod, N.SpectralNormConv2d):
                mod.power_iteration(30)
        if trained_batchnorm:
            for mod in list(warping.modules()) + list(spade.modules()):
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                    mod.running_mean.normal_(0, 0.1)
                    mod.running_var.uniform_(0.5, 1.5)
        g = torch.Generator().manual_seed(7)
        f_s = torch.randn(1, 32, 4, 8, 8, generator=g)
        kp_c = torch.randn(1, 21, 3, generator=g) * 0.3
    lp = LP.LivePortrait(None, None, warping.eval(), spade.eval())
    z = torch.zeros(1)
    src = LP.SourceState(f_s=f_s, kp_c=kp_c, scale=torch.tensor([[0.9]]), R=LP.get_rotation_matrix(z, z, z),
                         exp=torch.zeros(1, 21, 3), t=torch.zeros(1, 3), pitch=z, yaw=z, roll=z, x_s=kp_c * 0.9)
    return lp, src
