"""Tiny random upscaler networks, saved as ``.safetensors`` in the key layouts their original projects ship.

- ESRGAN's original layout (``model.0``, ``model.1.sub.N.RDBk.convj.0``, ...), from spandrel's RRDBNet;
- Real-ESRGAN's layout of the same network (``conv_first``, ``body.N.rdbk.convj``, ``conv_up1``,
  ``conv_hr``, ``conv_last``), with its pixel-unshuffle input at x2 as RealESRGAN_x2plus has;
- Real-ESRGAN's compact SRVGG net (``body.N``), built here as its repository writes it, not by spandrel;
- SPAN, from spandrel's class.

Each has a few channels and one block, so it runs in milliseconds on the CPU.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from app.engine.upscalers import upscaler_folder
from app.engine.upscaling import _spandrel


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def esrgan_state(scale: int) -> dict[str, torch.Tensor]:
    """ESRGAN (RRDBNet) in its original ``model.N`` layout: 8 filters, one block."""
    _seeded(scale)
    architectures = _spandrel().architectures
    net = architectures.ESRGAN.ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale)
    return {key: value.contiguous() for key, value in net.state_dict().items()}


def realesrgan_state(scale: int) -> dict[str, torch.Tensor]:
    """The same network in Real-ESRGAN's key layout; x2 folds its input with a pixel-unshuffle (12 channels in)."""
    _seeded(10 + scale)
    architectures = _spandrel().architectures
    if scale == 2:
        net = architectures.ESRGAN.ESRGAN(in_nc=12, out_nc=3, num_filters=8, num_blocks=1, scale=4, shuffle_factor=2)
    else:
        net = architectures.ESRGAN.ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale)
    old = net.state_dict()
    last = max(int(key.split(".")[1]) for key in old)
    renamed: dict[str, torch.Tensor] = {}
    for key, value in old.items():
        index = int(key.split(".")[1])
        kind = key.rsplit(".", 1)[1]
        if index == 0:
            new = f"conv_first.{kind}"
        elif match := re.match(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(\w+)$", key):
            block, rdb, conv, kind = match.groups()
            new = f"body.{block}.rdb{rdb}.conv{conv}.{kind}"
        elif key.startswith("model.1.sub."):
            new = f"conv_body.{kind}"
        elif index == last:
            new = f"conv_last.{kind}"
        elif index == last - 2:
            new = f"conv_hr.{kind}"
        else:
            new = f"conv_up{index // 3}.{kind}"
        renamed[new] = value.contiguous()
    return renamed


def srvgg_state(scale: int, features: int = 8, convs: int = 2) -> dict[str, torch.Tensor]:
    """Real-ESRGAN's SRVGGNetCompact as its repository builds it: conv, PReLU, (conv, PReLU) x convs, conv."""
    _seeded(20 + scale)
    layers: list[nn.Module] = [nn.Conv2d(3, features, 3, 1, 1), nn.PReLU(num_parameters=features)]
    for _ in range(convs):
        layers += [nn.Conv2d(features, features, 3, 1, 1), nn.PReLU(num_parameters=features)]
    layers.append(nn.Conv2d(features, 3 * scale * scale, 3, 1, 1))
    body = nn.ModuleList(layers)
    return {f"body.{key}": value.contiguous() for key, value in body.state_dict().items()}


def span_state(scale: int) -> dict[str, torch.Tensor]:
    """SPAN with 8 feature channels, from spandrel's class (its original layout)."""
    _seeded(30 + scale)
    net = _spandrel().architectures.SPAN.SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=scale)
    return {key: value.contiguous() for key, value in net.state_dict().items()}


def save_upscaler(models_dir: Path, name: str, state: dict[str, torch.Tensor]) -> Path:
    """Writes ``state`` as ``models_dir/upscalers/<name>.safetensors``."""
    path = upscaler_folder(models_dir) / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path
