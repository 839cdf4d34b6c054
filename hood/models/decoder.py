"""The heatmap decoder: classifier features and predicted class in, a 3xHxW heatmap in [-1, 1] out.

Architecture (the paper's, see docs/method.md): Linear to a ``C x 1 x 1`` code, a stride-1 kernel-4 transposed convolution to
4x4, then stride-2 transposed convolutions that double the resolution, each followed by BatchNorm and
ReLU, and a 1x1 transposed convolution to 3 channels with ``tanh``. With ``fw_layers = f > 1`` the ``f-1``
deepest classifier stage maps are added to the decoder activations of the same resolution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DecoderSpec:
    """Shape of a decoder; stored in its checkpoint so it rebuilds without the config."""

    feature_dim: int
    num_classes: int
    code_dim: int
    filters: tuple[int, ...]
    fw_layers: int = 1
    # side of the first stage's map (4 in the paper's settings); 5-7 give inputs such as 96 (6 * 16) and
    # 224 (7 * 32), which are no power of two: each further stage doubles it up to the input resolution
    base: int = 4

    @property
    def out_size(self) -> int:
        return self.base * 2 ** (len(self.filters) - 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "filters": list(self.filters)}

    @classmethod
    def from_dict(cls, d: dict) -> DecoderSpec:
        d = dict(d)
        # decoders saved by older hoods record an output scale; 1 is the decoder built here (h = tanh(.))
        scale = d.pop("output_scale", 1.0)
        if scale != 1.0:
            raise ValueError(f"its heatmaps are scaled by {scale}, which this hood does not support; retrain the decoder")
        return cls(**{**d, "filters": tuple(d["filters"])})


# Per (architecture, num_classes): code size and filters of the paper's five settings.
_SETTINGS: dict[str, tuple[dict[int, int], tuple[int, ...]]] = {
    "resnet18": ({10: 100, 100: 512}, (512, 256, 128, 64)),
    "wrn40_2": ({10: 128, 100: 128}, (256, 128, 64, 32)),
    "resnet50": ({200: 512}, (2048, 1024, 512, 256, 128)),
    "wrn10_2": ({10: 128, 100: 128}, (256, 128, 64, 32)),  # WRN-40-2's decoder (same feature shapes)
}


def decoder_spec_for(arch: str, feature_dim: int, num_classes: int, fw_layers: int = 1) -> DecoderSpec:
    """The paper's decoder for a classifier; unseen class counts get the code size of the nearest one."""
    codes, filters = _SETTINGS[arch]
    nearest = min(codes, key=lambda k: abs(k - num_classes))
    return DecoderSpec(feature_dim, num_classes, codes[nearest], filters, fw_layers)


def decoder_layout(image_size: int) -> tuple[int, int]:
    """``(base, stages)`` of a decoder drawing ``image_size`` square heatmaps: ``image_size = base * 2^(stages-1)``
    with ``base`` in 4..7 (32 -> 4 x 2^3, 96 -> 6 x 2^4, 224 -> 7 x 2^5)."""
    for doublings in range(12):
        base, rest = divmod(image_size, 2**doublings)
        if rest == 0 and 4 <= base <= 7:
            return base, doublings + 1
    raise ValueError(
        f"a decoder cannot draw {image_size}x{image_size} heatmaps: the input side must be 4 to 7 times a power of "
        f"two (e.g. 32, 64, 96, 128, 224); resize the images to such a size"
    )


def generic_decoder_spec(
    feature_dim: int, num_classes: int, image_size: int, fw_layers: int = 1,
    skip_channels: dict[int, int] | None = None,
) -> DecoderSpec:
    """A decoder for any classifier, sized like the paper's: the first stage as wide as the features
    (256 to 1024 channels), halving per stage down to 32, up to the input resolution. A stage that takes a
    skip map (``skip_channels``: map side -> channels) gets that map's channel count, so it can be added."""
    base, stages = decoder_layout(image_size)
    widest = min(1024, max(256, feature_dim))
    sizes = [base * 2**i for i in range(stages)]
    filters = tuple((skip_channels or {}).get(s, max(32, widest >> i)) for i, s in enumerate(sizes))
    code_dim = 128 if num_classes <= 100 else 512
    return DecoderSpec(feature_dim, num_classes, code_dim, filters, fw_layers, base)


class HeatmapDecoder(nn.Module):
    """Maps ``concat(minmax(z), one_hot(y_hat))`` (plus optional skip maps) to a heatmap."""

    def __init__(self, spec: DecoderSpec) -> None:
        super().__init__()
        self.spec = spec
        self.linear = nn.Linear(spec.feature_dim + spec.num_classes, spec.code_dim)
        stages = []
        in_ch = spec.code_dim
        for i, out_ch in enumerate(spec.filters):
            kernel, stride, pad = (spec.base, 1, 0) if i == 0 else (4, 2, 1)
            stages.append(
                nn.Sequential(
                    nn.ConvTranspose2d(in_ch, out_ch, kernel, stride, pad, bias=False),
                    nn.BatchNorm2d(out_ch),
                    nn.ReLU(inplace=True),
                )
            )
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)
        self.head = nn.ConvTranspose2d(in_ch, 3, 1)
        # feature range of the ID training set: a buffer, so it travels with the weights
        self.register_buffer("feat_min", torch.tensor(0.0))
        self.register_buffer("feat_max", torch.tensor(1.0))
        # heatmap magnitudes up to this value are what the decoder draws on ID images too (docs/method.md,
        # "Noise floor"); 0 = none, the paper's heatmap
        self.register_buffer("noise_floor", torch.tensor(0.0))

    def set_feature_range(self, fmin: float, fmax: float) -> None:
        self.feat_min.fill_(float(fmin))
        self.feat_max.fill_(float(fmax))

    def code_input(self, features: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        span = (self.feat_max - self.feat_min).clamp_min(1e-12)
        z = (features.float() - self.feat_min) / span
        # a comparison, not F.one_hot: no range check that reads the device back (CUDA graph capture)
        onehot = (pred.long()[:, None] == torch.arange(self.spec.num_classes, device=pred.device)).to(z.dtype)
        return torch.cat([z, onehot], dim=1)

    def forward(self, features: torch.Tensor, pred: torch.Tensor, maps: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The heatmap, ``tanh`` of the head's output; in eval mode with the noise floor taken off every
        pixel's magnitude (training regresses the raw output)."""
        x = self.linear(self.code_input(features, pred))[:, :, None, None]
        skips = {}
        if self.spec.fw_layers > 1:
            if maps is None or len(maps) < self.spec.fw_layers - 1:
                raise ValueError(f"fw_layers={self.spec.fw_layers} needs {self.spec.fw_layers - 1} stage maps")
            skips = {m.shape[-1]: m for m in maps[len(maps) - (self.spec.fw_layers - 1):]}
        for stage in self.stages:
            x = stage(x)
            skip = skips.get(x.shape[-1])
            if skip is not None:
                x = x + skip.to(x.dtype)
        h = torch.tanh(self.head(x))
        return h if self.training else remove_floor(h, self.noise_floor)


def remove_floor(h: torch.Tensor, floor: torch.Tensor | float) -> torch.Tensor:
    """Shrink each pixel's channel values so that its channel-max magnitude ``m`` becomes
    ``max(m - floor, 0) / (1 - floor)``, keeping the channels' signs and ratios: a pixel as bright as the ID
    noise becomes 0, a saturated one stays 1, so the heatmap keeps its [-1, 1] range for drawing. With
    floor 0 it is ``h`` itself."""
    if float(floor) == 0:
        return h  # exactly the paper's heatmap
    mag = h.abs().amax(dim=1, keepdim=True)
    span = (1 - torch.as_tensor(floor, device=h.device)).clamp_min(1e-6)
    scale = (mag - floor).clamp_min(0) / (mag.clamp_min(1e-12) * span)
    return h * scale


def heatmap_score(h: torch.Tensor) -> torch.Tensor:
    """The paper's score: mean over pixels of the channel-max of ``|h|``. Larger is more OOD."""
    return h.abs().amax(dim=1).flatten(1).mean(dim=1)
