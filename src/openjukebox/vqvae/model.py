"""The hierarchical VQ-VAE (Jukebox paper §3): three independent encoder/codebook/decoder levels.

Data path: audio (N, T) -> `encode` -> codes zs[level] (N, T / hop[level]) -> `decode(z, level)` -> audio.
Level 0 is the bottom (hop 8, finest), the last level the top (hop 128). Long audio is processed in chunks
with overlapping context so memory stays flat; with context at least the receptive field, chunked and
one-shot results agree (up to floating-point rounding). For fp32 on the CPU, `encode`/`decode` run through the
inference paths of `fast.py` (same codes as the modules, decoded audio within ~1e-7; several times faster).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from openjukebox.vqvae import fast
from openjukebox.vqvae.codebook import Codebook
from openjukebox.vqvae.config import VQVAEConfig
from openjukebox.vqvae.encdec import Decoder, Encoder

# Chunking of long audio: chunk length and the context kept on each side (more than the official
# level-0 receptive field of about ±1.05 s).
CHUNK_SECONDS = 30.0
CONTEXT_SECONDS = 1.5


@dataclass
class VQVAEOutput:
    recons: list[torch.Tensor]  # per level: (N, T) reconstruction from that level's codes alone
    zs: list[torch.Tensor]  # per level: (N, T / hop) codes
    commit_losses: list[torch.Tensor]  # per level: scalar
    metrics: dict[str, torch.Tensor]  # codebook statistics, "<name>/l<level>"


class VQVAE(nn.Module):
    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoders = nn.ModuleList(Encoder(config, level) for level in range(config.levels))
        self.decoders = nn.ModuleList(Decoder(config, level) for level in range(config.levels))
        self.codebooks = nn.ModuleList(
            Codebook(config.l_bins, config.emb_width, config.mu, config.revival_threshold) for _ in range(config.levels)
        )
        # `encode`/`decode` use the inference paths of `fast.py` where they apply (fp32 on the CPU); False runs
        # the modules themselves. Training (`forward`) always runs the modules.
        self.fast_inference = True

    @property
    def hop_lengths(self) -> tuple[int, ...]:
        return self.config.hop_lengths

    @property
    def levels(self) -> int:
        return self.config.levels

    # --- training -----------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> VQVAEOutput:
        """Encode, quantise (updating codebooks in training mode) and decode every level. x: (N, T)."""
        assert x.dim() == 2, f"expected audio (N, T), got {tuple(x.shape)}"
        x_in = encoder_input(x)  # (N, 1, T)
        recons, zs, commits, metrics = [], [], [], {}
        for level in range(self.levels):
            out = self.codebooks[level](self.encoders[level](x_in))
            recon = self.decoders[level](out.quantized)  # (N, 1, T)
            assert recon.shape == x_in.shape, f"level {level}: {tuple(recon.shape)} != {tuple(x_in.shape)}"
            recons.append(recon.squeeze(1))
            zs.append(out.codes)
            commits.append(out.commit_loss)
            metrics.update({f"{k}/l{level}": v for k, v in out.metrics.items()})
        return VQVAEOutput(recons, zs, commits, metrics)

    # --- inference ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(
        self,
        audio: torch.Tensor,
        levels: Sequence[int] | None = None,
        chunk_seconds: float | None = CHUNK_SECONDS,
        context_seconds: float = CONTEXT_SECONDS,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[torch.Tensor]:
        """Audio (N, T) -> codes per requested level (default all, bottom first), each (N, ceil(T/128)*128/hop).

        T is zero-padded to a multiple of the top hop. With `chunk_seconds`, audio is encoded in chunks that
        see `context_seconds` of neighbouring audio on each side.
        """
        levels = list(range(self.levels)) if levels is None else list(levels)
        top = self.hop_lengths[-1]
        audio = _pad_to_multiple(audio, top)
        total = audio.shape[-1]
        spans = _chunk_spans(total, top, self._samples(chunk_seconds, top), self._samples(context_seconds, top))
        pieces: list[list[torch.Tensor]] = [[] for _ in levels]
        for i, (start, stop, ctx_start, ctx_stop) in enumerate(spans):
            x = encoder_input(audio[:, ctx_start:ctx_stop].to(self._dtype))
            for j, level in enumerate(levels):
                hop = self.hop_lengths[level]
                z = self._encode_chunk(x, level)
                pieces[j].append(z[:, (start - ctx_start) // hop : (stop - ctx_start) // hop])
            if progress:
                progress(i + 1, len(spans))
        return [torch.cat(p, dim=1) for p in pieces]

    @torch.no_grad()
    def decode(
        self,
        z: torch.Tensor,
        level: int,
        chunk_seconds: float | None = CHUNK_SECONDS,
        context_seconds: float = CONTEXT_SECONDS,
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """Codes (N, L) of `level` -> audio (N, L * hop[level]) through that level's decoder."""
        assert z.dim() == 2, f"expected codes (N, L), got {tuple(z.shape)}"
        hop = self.hop_lengths[level]
        length = z.shape[1]
        chunk = None if chunk_seconds is None else max(1, self._samples(chunk_seconds, hop) // hop)
        context = self._samples(context_seconds, hop) // hop
        spans = _chunk_spans(length, 1, chunk, context)
        out = None
        for i, (start, stop, ctx_start, ctx_stop) in enumerate(spans):
            audio = self._decode_chunk(z[:, ctx_start:ctx_stop], level)
            if out is None:  # filled chunk by chunk: no list of pieces to concatenate at the end
                out = audio.new_empty(z.shape[0], length * hop)
            out[:, start * hop : stop * hop] = audio[:, (start - ctx_start) * hop : (stop - ctx_start) * hop]
            if progress:
                progress(i + 1, len(spans))
        return out

    def _encode_chunk(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """Audio (N, 1, T) -> codes (N, T / hop[level])."""
        weight = self.encoders[level].blocks[0].proj.weight
        if self.fast_inference and fast.supports(self.config, x, weight, self.codebooks[level].embed):
            latents = fast.encode_exact(self.encoders[level], x)  # (N, emb_width, T / hop)
            n, c, t = latents.shape
            codes = fast.nearest_codes(latents.transpose(1, 2).reshape(-1, c), self.codebooks[level].embed)
            return codes.view(n, t)
        return self.codebooks[level].encode(self.encoders[level](x).to(self.codebooks[level].embed.dtype))

    def _decode_chunk(self, z: torch.Tensor, level: int) -> torch.Tensor:
        """Codes (N, L) -> audio (N, L * hop[level])."""
        embed = self.codebooks[level].embed
        if self.fast_inference and fast.supports(self.config, embed, self.decoders[level].out.weight):
            latents = nn.functional.embedding(z, embed)  # (N, L, emb_width)
            return fast.decode_latents(self.decoders[level], latents)
        latents = self.codebooks[level].decode(z).to(self._dtype)
        return self.decoders[level](latents).squeeze(1).float()

    @property
    def _dtype(self) -> torch.dtype:
        return self.decoders[0].out.weight.dtype

    def _samples(self, seconds: float | None, multiple: int) -> int | None:
        if seconds is None:
            return None
        return math.ceil(seconds * self.config.sample_rate / multiple) * multiple


def encoder_input(audio: torch.Tensor) -> torch.Tensor:
    """Audio (N, T) -> (N, 1, T) laid out as the original's encoder input, its (N, T, 1) batch permuted: strides
    (T, 1, 1), where `unsqueeze(1)` gives (T, T, 1). PyTorch takes the original's layout for channels-last, and
    with some oneDNN kernels (AVX2 CPUs) the first convolution then sums in another order: last-bit differences
    that flip codebook near-ties (4 in 33 056 level-0 codes on 3 s at the official shapes). The same layout
    gives the same kernel, so the same codes."""
    return audio.contiguous().unsqueeze(-1).transpose(1, 2)


def _pad_to_multiple(audio: torch.Tensor, multiple: int) -> torch.Tensor:
    pad = (-audio.shape[-1]) % multiple
    return nn.functional.pad(audio, (0, pad)) if pad else audio


def _chunk_spans(total: int, align: int, chunk: int | None, context: int) -> list[tuple[int, int, int, int]]:
    """Split [0, total) into (start, stop, ctx_start, ctx_stop) spans, all multiples of `align`."""
    if chunk is None or total <= chunk + 2 * context:
        return [(0, total, 0, total)]
    spans = []
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        spans.append((start, stop, max(0, start - context), min(total, stop + context)))
    assert all(s % align == 0 for span in spans for s in span[:3]), "chunks must align to the top hop"
    return spans
