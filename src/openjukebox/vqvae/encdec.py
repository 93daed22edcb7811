"""Convolutional encoder and decoder stacks of the VQ-VAE (Jukebox paper §3.2, Fig. 2).

Each level has its own encoder, run from the raw waveform, and its own decoder, which rebuilds the whole
waveform from that level's codes alone. An encoder for level L chains L+1 blocks; block i downsamples by
stride**downs_t[i] through strided convolutions, each followed by a stack of non-causal dilated residual
blocks. Decoders mirror this with transposed convolutions; their dilations run from large to small.

Tensors are (N, C, T) throughout.
"""

from __future__ import annotations

import torch
from torch import nn

from openjukebox.vqvae.config import VQVAEConfig


class ResBlock(nn.Module):
    """x + res_scale * conv1x1(relu(conv3_dilated(relu(x)))). Non-causal, same length."""

    def __init__(self, channels: int, hidden: int, dilation: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, hidden, kernel_size=3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(hidden, channels, kernel_size=1)
        self.res_scale = res_scale  # 1 in the VQ-VAE; 1/sqrt(depth) in some upsampler conditioners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(torch.relu(self.conv1(torch.relu(x))))
        return x + h if self.res_scale == 1.0 else x + self.res_scale * h


class ResNet1d(nn.Module):
    """`depth` residual blocks with dilations growth**i (cycled), optionally in reverse order."""

    def __init__(
        self,
        channels: int,
        depth: int,
        m_conv: float,
        growth: int,
        cycle: int | None,
        reverse: bool,
        res_scale: float = 1.0,
    ) -> None:
        super().__init__()
        dilations = [growth ** (i if cycle is None else i % cycle) for i in range(depth)]
        if reverse:
            dilations = dilations[::-1]
        hidden = int(m_conv * channels)
        self.blocks = nn.ModuleList(ResBlock(channels, hidden, d, res_scale) for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class DownStep(nn.Module):
    """Strided conv (kernel 2*stride) halving the rate, then a residual stack."""

    def __init__(self, c_in: int, width: int, stride: int, res: ResNet1d) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, width, kernel_size=2 * stride, stride=stride, padding=stride // 2)
        self.res = res

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(self.conv(x))


class UpStep(nn.Module):
    """A residual stack, then a transposed conv doubling the rate."""

    def __init__(self, width: int, c_out: int, stride: int, res: ResNet1d) -> None:
        super().__init__()
        self.res = res
        self.conv = nn.ConvTranspose1d(width, c_out, kernel_size=2 * stride, stride=stride, padding=stride // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.res(x))


def _resnet(config: VQVAEConfig, level: int, reverse: bool) -> ResNet1d:
    mult = config.multipliers[level]
    return ResNet1d(
        channels=config.width * mult,
        depth=config.depth * mult,
        m_conv=config.m_conv,
        growth=config.dilation_growth_rate,
        cycle=config.dilation_cycle,
        reverse=reverse,
    )


class EncoderBlock(nn.Module):
    """Downsample by stride**down, then project to emb_width channels."""

    def __init__(self, config: VQVAEConfig, level: int, block: int) -> None:
        super().__init__()
        width = config.width * config.multipliers[level]
        c_in = 1 if block == 0 else config.emb_width
        stride = config.strides_t[block]
        self.downs = nn.ModuleList(
            DownStep(c_in if i == 0 else width, width, stride, _resnet(config, level, reverse=False))
            for i in range(config.downs_t[block])
        )
        self.proj = nn.Conv1d(width, config.emb_width, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for down in self.downs:
            x = down(x)
        return self.proj(x)


class DecoderBlock(nn.Module):
    """Project from emb_width, then upsample by stride**down back to emb_width channels."""

    def __init__(self, config: VQVAEConfig, level: int, block: int) -> None:
        super().__init__()
        width = config.width * config.multipliers[level]
        stride = config.strides_t[block]
        n = config.downs_t[block]
        self.proj = nn.Conv1d(config.emb_width, width, kernel_size=3, padding=1)
        self.ups = nn.ModuleList(
            UpStep(
                width,
                config.emb_width if i == n - 1 else width,
                stride,
                _resnet(config, level, reverse=config.reverse_decoder_dilation),
            )
            for i in range(n)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        for up in self.ups:
            x = up(x)
        return x


class Encoder(nn.Module):
    """Audio (N, 1, T) -> latents (N, emb_width, T / hop_lengths[level])."""

    def __init__(self, config: VQVAEConfig, level: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(EncoderBlock(config, level, i) for i in range(level + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Decoder(nn.Module):
    """Latents (N, emb_width, T / hop_lengths[level]) -> audio (N, 1, T). Blocks run from coarse to fine."""

    def __init__(self, config: VQVAEConfig, level: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(DecoderBlock(config, level, i) for i in range(level + 1))
        self.out = nn.Conv1d(config.emb_width, 1, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in reversed(self.blocks):
            x = block(x)
        return self.out(x)
