"""MODNet (Ke et al., AAAI 2022) with a MobileNetV2 backbone, laid out so that its state_dict
matches the official ``modnet_photographic_portrait_matting.ckpt`` key for key.

Module names and registration order are part of the checkpoint format: do not rename them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (in, hidden, out, stride) of the inverted residual blocks 1-17 of MobileNetV2 (width 1.0).
_INVERTED_RESIDUALS: tuple[tuple[int, int, int, int], ...] = (
    (32, 32, 16, 1),
    (16, 96, 24, 2),
    (24, 144, 24, 1),
    (24, 144, 32, 2),
    (32, 192, 32, 1),
    (32, 192, 32, 1),
    (32, 192, 64, 2),
    (64, 384, 64, 1),
    (64, 384, 64, 1),
    (64, 384, 64, 1),
    (64, 384, 96, 1),
    (96, 576, 96, 1),
    (96, 576, 96, 1),
    (96, 576, 160, 2),
    (160, 960, 160, 1),
    (160, 960, 160, 1),
    (160, 960, 320, 1),
)
# Indices of the backbone blocks whose outputs are the encoder features.
_ENC2X, _ENC4X, _ENC8X, _ENC16X, _ENC32X = 1, 3, 6, 13, 18


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def _down(x: torch.Tensor, factor: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: (expand 1x1) -> depthwise 3x3 -> project 1x1, residual when shapes allow."""

    def __init__(self, inp: int, hidden: int, out: int, stride: int) -> None:
        super().__init__()
        self.use_residual = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if hidden != inp:
            layers += [nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out, 1, bias=False),
            nn.BatchNorm2d(out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2Features(nn.Module):
    """The 19 feature blocks of MobileNetV2 without a classifier."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(inplace=True))
        ]
        blocks += [InvertedResidual(*cfg) for cfg in _INVERTED_RESIDUALS]
        blocks.append(nn.Sequential(nn.Conv2d(320, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6(inplace=True)))
        self.features = nn.Sequential(*blocks)


class MobileNetV2Backbone(nn.Module):
    """Wrapper returning the five encoder features [enc2x, enc4x, enc8x, enc16x, enc32x]."""

    enc_channels = (16, 24, 32, 96, 1280)

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.model = MobileNetV2Features(in_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        wanted = (_ENC2X, _ENC4X, _ENC8X, _ENC16X, _ENC32X)
        features: list[torch.Tensor] = []
        for index, block in enumerate(self.model.features):
            x = block(x)
            if index in wanted:
                features.append(x)
        return features


class IBNorm(nn.Module):
    """BatchNorm on the first half of the channels, InstanceNorm (no affine, no stats) on the rest."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bnorm_channels = channels // 2
        self.inorm_channels = channels - self.bnorm_channels
        self.bnorm = nn.BatchNorm2d(self.bnorm_channels, affine=True)
        self.inorm = nn.InstanceNorm2d(self.inorm_channels, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bnorm(x[:, : self.bnorm_channels].contiguous())
        inn = self.inorm(x[:, self.bnorm_channels :].contiguous())
        return torch.cat((bn, inn), dim=1)


class Conv2dIBNormRelu(nn.Module):
    """Conv2d, optionally followed by IBNorm and ReLU, held in ``layers`` (keys ``layers.0``...)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        *,
        with_ibn: bool = True,
        with_relu: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=True)]
        if with_ibn:
            layers.append(IBNorm(out_channels))
        if with_relu:
            layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _head(in_channels: int) -> Conv2dIBNormRelu:
    """A 1-channel output convolution without norm or activation."""
    return Conv2dIBNormRelu(in_channels, 1, 1, with_ibn=False, with_relu=False)


class SEBlock(nn.Module):
    """Squeeze-and-excitation: channel weights from a global average pool through two linear layers."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        weights = self.fc(self.pool(x).view(n, c)).view(n, c, 1, 1)
        return x * weights


class LRBranch(nn.Module):
    """Low-resolution semantic branch: backbone -> SE -> two upsampling convs (-> semantic head)."""

    def __init__(self, backbone: MobileNetV2Backbone) -> None:
        super().__init__()
        enc = backbone.enc_channels
        self.backbone = backbone
        self.se_block = SEBlock(enc[4], reduction=4)
        self.conv_lr16x = Conv2dIBNormRelu(enc[4], enc[3], 5, padding=2)
        self.conv_lr8x = Conv2dIBNormRelu(enc[3], enc[2], 5, padding=2)
        self.conv_lr = Conv2dIBNormRelu(enc[2], 1, 3, stride=2, padding=1, with_ibn=False, with_relu=False)

    def forward(
        self, img: torch.Tensor, inference: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor, list[torch.Tensor]]:
        enc2x, enc4x, _, _, enc32x = self.backbone(img)
        x = self.se_block(enc32x)
        x = self.conv_lr16x(_up2(x))
        lr8x = self.conv_lr8x(_up2(x))
        pred_semantic = None if inference else torch.sigmoid(self.conv_lr(lr8x))
        return pred_semantic, lr8x, [enc2x, enc4x]


class HRBranch(nn.Module):
    """High-resolution detail branch working at 1/4 and 1/2 of the input (-> detail head)."""

    def __init__(self, hr_channels: int, enc_channels: tuple[int, ...]) -> None:
        super().__init__()
        hr = hr_channels
        self.tohr_enc2x = Conv2dIBNormRelu(enc_channels[0], hr, 1)
        self.conv_enc2x = Conv2dIBNormRelu(hr + 3, hr, 3, stride=2, padding=1)
        self.tohr_enc4x = Conv2dIBNormRelu(enc_channels[1], hr, 1)
        self.conv_enc4x = Conv2dIBNormRelu(2 * hr, 2 * hr, 3, padding=1)
        self.conv_hr4x = nn.Sequential(
            Conv2dIBNormRelu(3 * hr + 3, 2 * hr, 3, padding=1),
            Conv2dIBNormRelu(2 * hr, 2 * hr, 3, padding=1),
            Conv2dIBNormRelu(2 * hr, hr, 3, padding=1),
        )
        self.conv_hr2x = nn.Sequential(
            Conv2dIBNormRelu(2 * hr, 2 * hr, 3, padding=1),
            Conv2dIBNormRelu(2 * hr, hr, 3, padding=1),
            Conv2dIBNormRelu(hr, hr, 3, padding=1),
            Conv2dIBNormRelu(hr, hr, 3, padding=1),
        )
        self.conv_hr = nn.Sequential(Conv2dIBNormRelu(hr + 3, hr, 3, padding=1), _head(hr))

    def forward(
        self,
        img: torch.Tensor,
        enc2x: torch.Tensor,
        enc4x: torch.Tensor,
        lr4x: torch.Tensor,
        inference: bool,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        img2x = _down(img, 0.5)
        img4x = _down(img, 0.25)
        e2 = self.tohr_enc2x(enc2x)
        hr4x = self.conv_enc2x(torch.cat((img2x, e2), dim=1))
        e4 = self.tohr_enc4x(enc4x)
        hr4x = self.conv_enc4x(torch.cat((hr4x, e4), dim=1))
        hr4x = self.conv_hr4x(torch.cat((hr4x, lr4x, img4x), dim=1))
        hr2x = self.conv_hr2x(torch.cat((_up2(hr4x), e2), dim=1))
        pred_detail = None if inference else torch.sigmoid(self.conv_hr(torch.cat((_up2(hr2x), img), dim=1)))
        return pred_detail, hr2x


class FusionBranch(nn.Module):
    """Fuses the semantic and detail features into the full-resolution matte."""

    def __init__(self, hr_channels: int, enc_channels: tuple[int, ...]) -> None:
        super().__init__()
        hr = hr_channels
        self.conv_lr4x = Conv2dIBNormRelu(enc_channels[2], hr, 5, padding=2)
        self.conv_f2x = Conv2dIBNormRelu(2 * hr, hr, 3, padding=1)
        self.conv_f = nn.Sequential(Conv2dIBNormRelu(hr + 3, hr // 2, 3, padding=1), _head(hr // 2))

    def forward(self, img: torch.Tensor, lr4x: torch.Tensor, hr2x: torch.Tensor) -> torch.Tensor:
        lr2x = _up2(self.conv_lr4x(lr4x))
        f2x = self.conv_f2x(torch.cat((lr2x, hr2x), dim=1))
        return torch.sigmoid(self.conv_f(torch.cat((_up2(f2x), img), dim=1)))


class MODNet(nn.Module):
    """MODNet for portrait matting. Input: (B,3,H,W) in [-1,1], H and W multiples of 32."""

    def __init__(self, in_channels: int = 3, hr_channels: int = 32) -> None:
        super().__init__()
        # One backbone object registered under two names, as in the official model: the
        # checkpoint carries every backbone tensor twice and strict loading needs both.
        self.backbone = MobileNetV2Backbone(in_channels)
        self.lr_branch = LRBranch(self.backbone)
        self.hr_branch = HRBranch(hr_channels, self.backbone.enc_channels)
        self.f_branch = FusionBranch(hr_channels, self.backbone.enc_channels)

    def forward_heads(
        self, img: torch.Tensor, inference: bool = False
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """The three official outputs (semantic at 1/16, detail, matte); inference=True skips two."""
        pred_semantic, lr8x, (enc2x, enc4x) = self.lr_branch(img, inference)
        lr4x = _up2(lr8x)
        pred_detail, hr2x = self.hr_branch(img, enc2x, enc4x, lr4x, inference)
        pred_matte = self.f_branch(img, lr4x, hr2x)
        return pred_semantic, pred_detail, pred_matte

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """The (B,1,H,W) matte in [0,1] (the official inference-mode output)."""
        return self.forward_heads(img, inference=True)[2]
