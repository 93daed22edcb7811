"""Inference-only CPU paths behind `VQVAE.encode` and `VQVAE.decode` (fp32).

Same maths as the modules of `encdec.py` and as `Codebook.encode`, organised for a CPU. The plain module
path spends much of its time outside the arithmetic: fresh multi-MB tensors for every op (page faults on
first touch), separate ReLU/add passes over memory, layout reorders around oneDNN and, in the codebook, the
full (rows x l_bins) distance matrix. See BENCHMARKS.md for measurements.

Decoding (`decode_latents`, results within ~1e-7 of the modules): activations are time-major, (T, C) per
batch item, in buffers with `pad` zero rows on each side (`_Act`), so every convolution is one GEMM over
"im2col" rows, with no edge cases:
    same conv (odd kernel k, dilation d):  out[t] = b + sum_j x[t + (j - k//2) d] @ W_j         rows (tile, k C)
    residual block:                        y = x + relu(conv3_d(relu(x))) @ W2 + b2
    transposed conv (kernel 2s, stride s, padding s/2): output samples s t .. s t + s - 1, as one row of
        the (T, s C_out) view of the (s T, C_out) output, depend on x[t-1], x[t] (first half) and x[t],
        x[t+1] (second half) only: two GEMMs writing interleaved outputs in place.
Each layer runs `TILE` output rows at a time, so that the im2col rows and a residual block's hidden
activations stay in cache, and full-length buffers are recycled through a pool.

Encoding (`encode_exact`) must give the *same codes* as the original code, which on random-weight parity
tests means bit-identical latents: codebook near-ties are common there, and any change in the order of the
floating-point sums (e.g. the GEMM formulation above) flips a few codes in a thousand. So it calls the same
oneDNN convolutions as the modules and saves only around them: in-place ReLU and residual adds, and the 1x1
convolutions run on time slices of at least `EXACT_TILE` steps (or the whole length). oneDNN picks its
kernel and blocking by problem size, so results of short slices (hundreds of steps) can differ in the last
bit; from ~16k steps on they match the whole-length call (checked for 1-4 threads, batch 1-2, 16-64 channels,
lengths up to 30 s chunks). The dilated convolutions always run on the whole length: their algorithm
(direct or im2col + GEMM) depends on it. `nearest_codes` computes the codebook distances tile by tile in
the original's order of operations.

The decoder's weights are re-laid out on every call (milliseconds), so no stale copy of parameters is kept.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from openjukebox.vqvae.config import VQVAEConfig
from openjukebox.vqvae.encdec import Decoder, Encoder, ResBlock

TILE = 8192  # output rows per GEMM in `decode_latents`
EXACT_TILE = 16384  # minimum time steps per 1x1-conv call in `encode_exact` (see above)
CODE_TILE = 512  # latent rows per distance GEMM in `nearest_codes`


def supports(config: VQVAEConfig, *tensors: torch.Tensor) -> bool:
    """Whether these paths apply: `tensors` (inputs, weights) all fp32 on the CPU; even strides (decoder)."""
    fp32_cpu = all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
    return fp32_cpu and all(s % 2 == 0 for s in config.strides_t)


def _tiles(length: int, tile: int, merge_last: bool = False) -> Iterator[tuple[int, int]]:
    """[start, stop) spans of `tile` covering [0, length); with `merge_last`, a short last span joins the
    one before it, so that every span is at least `tile` long (or the whole length)."""
    if length == 0:
        return
    stops = list(range(tile, length, tile))
    if merge_last and stops and length - stops[-1] < tile:
        stops.pop()
    starts = [0, *stops]
    yield from zip(starts, [*stops, length], strict=True)


# --------------------------------------------------------------------------------------------- decoder


class _Act:
    """Activation of one batch item: `buf` (pad + T + pad, C); rows outside [pad, pad + T) stay zero."""

    def __init__(self, length: int, channels: int, pad: int) -> None:
        self.buf = torch.empty(length + 2 * pad, channels)
        self.buf[:pad].zero_()
        self.buf[pad + length :].zero_()
        self.pad, self.length, self.channels = pad, length, channels

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop) in unpadded time; may reach into the zero pads."""
        return self.buf[self.pad + start : self.pad + stop]

    def windows(self, start: int, n: int, k: int) -> torch.Tensor:
        """(n, k C) view: row i is rows [start + i - k//2, start + i + k//2] flattened (a k=3 conv's input)."""
        offset = self.buf.storage_offset() + (self.pad + start - k // 2) * self.channels
        return self.buf.as_strided((n, k * self.channels), (self.channels, 1), offset)


class _Work:
    """Per-call state: the activation pool, per-tile scratch matrices, the tile size.

    Released activations are reused for the next one of the same shape, except those shorter than the
    longest seen so far: through a decoder, lengths only grow, so these would only hold memory.
    """

    def __init__(self, pad: int, tile: int) -> None:
        self.pad, self.tile, self.longest = pad, tile, 0
        self.free: dict[tuple[int, int], list[_Act]] = {}
        self.mats: dict[str, torch.Tensor] = {}

    def act(self, length: int, channels: int) -> _Act:
        self.longest = max(self.longest, length)
        free = self.free.get((length, channels))
        return free.pop() if free else _Act(length, channels, self.pad)

    def release(self, act: _Act) -> None:
        if act.length >= self.longest:
            self.free.setdefault((act.length, act.channels), []).append(act)

    def scratch(self, name: str, rows: int, cols: int) -> torch.Tensor:
        mat = self.mats.get(name)
        if mat is None or mat.numel() < rows * cols:
            mat = self.mats[name] = torch.empty(rows * cols)
        return mat[: rows * cols].view(rows, cols)


def _taps(weight: torch.Tensor) -> torch.Tensor:
    """Conv1d weight (C_out, C_in, k) -> GEMM weight (k C_in, C_out), rows tap-major."""
    return weight.detach().permute(2, 1, 0).reshape(-1, weight.shape[0]).contiguous()


def _transposed_taps(conv: nn.ConvTranspose1d) -> tuple[torch.Tensor, torch.Tensor]:
    """ConvTranspose1d (kernel 2s, stride s, padding s/2) weight (C_in, C_out, 2s) -> GEMM weights of the
    early phases r < s/2, from [x[t-1], x[t]], and of the late phases r >= s/2, from [x[t], x[t+1]]:
    each (2 C_in, s/2 C_out).

    Output sample s t + r gets x[t + j] @ w[:, :, k] with k = r + s/2 - s j, for j in (-1, 0, 1), 0 <= k < 2s.
    """
    w = conv.weight.detach()
    c_in, c_out, _ = w.shape
    s, h = conv.stride[0], conv.stride[0] // 2
    taps = w.new_zeros(3, c_in, s, c_out)  # (j + 1, C_in, r, C_out)
    for j in (-1, 0, 1):
        for r in range(s):
            k = r + h - s * j
            if 0 <= k < 2 * s:
                taps[j + 1, :, r] = w[:, :, k]
    return taps[:2, :, :h].reshape(2 * c_in, -1), taps[1:, :, h:].reshape(2 * c_in, -1)


def _same_conv(src: _Act, conv: nn.Conv1d, work: _Work) -> _Act:
    """Stride-1 conv, odd kernel k, padding dilation * (k // 2); no activation."""
    w, b = _taps(conv.weight), conv.bias.detach()
    k, d, c = conv.kernel_size[0], conv.dilation[0], src.channels
    dst = work.act(src.length, conv.out_channels)
    for start, stop in _tiles(src.length, work.tile):
        n = stop - start
        cols = work.scratch("cols", n, k * c)
        if d == 1:
            cols.copy_(src.windows(start, n, k))
        else:
            for j in range(k):
                off = (j - k // 2) * d
                cols[:, j * c : (j + 1) * c].copy_(src.rows(start + off, stop + off))
        torch.addmm(b, cols, w, out=dst.rows(start, stop))
    return dst


def _res_block(src: _Act, block: ResBlock, work: _Work) -> _Act:
    """src + relu(conv1(relu(src))) @ W2 + b2, tile by tile."""
    assert block.res_scale == 1.0, "the fast path covers the VQ-VAE's unscaled residual blocks only"
    w1, b1 = _taps(block.conv1.weight), block.conv1.bias.detach()
    w2, b2 = _taps(block.conv2.weight), block.conv2.bias.detach()
    d, c = block.conv1.dilation[0], src.channels
    dst = work.act(src.length, c)
    for start, stop in _tiles(src.length, work.tile):
        n = stop - start
        cols = work.scratch("cols", n, 3 * c)  # [relu(x[t-d]), relu(x[t]), relu(x[t+d])]
        for j, off in enumerate((-d, 0, d)):
            torch.clamp(src.rows(start + off, stop + off), min=0, out=cols[:, j * c : (j + 1) * c])
        hidden = torch.addmm(b1, cols, w1, out=work.scratch("hidden", n, w1.shape[1])).relu_()
        out = torch.addmm(b2, hidden, w2, out=work.scratch("out", n, c))  # conv2, then the residual sum
        torch.add(src.rows(start, stop), out, out=dst.rows(start, stop))
    return dst


def _up_conv(src: _Act, conv: nn.ConvTranspose1d, work: _Work) -> _Act:
    """Transposed conv (kernel 2s, stride s, padding s/2): output rows s t .. s t + s - 1 as one (s C_out) row,
    its early and late halves each one GEMM over two neighbouring input rows."""
    (w_early, w_late), s = _transposed_taps(conv), conv.stride[0]
    c, half = src.channels, s // 2 * conv.out_channels
    b = conv.bias.detach().repeat(s // 2)
    dst = work.act(src.length * s, conv.out_channels)
    for start, stop in _tiles(src.length, work.tile):
        n = stop - start
        cols = work.scratch("cols", n, 3 * c)  # [x[t-1], x[t], x[t+1]]
        cols.copy_(src.windows(start, n, 3))
        out = dst.rows(s * start, s * stop).view(n, -1)  # (n, s C_out) is (s n, C_out)
        torch.addmm(b, cols[:, : 2 * c], w_early, out=out[:, :half])
        torch.addmm(b, cols[:, c:], w_late, out=out[:, half:])
    return dst


@torch.no_grad()
def decode_latents(decoder: Decoder, latents: torch.Tensor, tile: int = TILE) -> torch.Tensor:
    """Latents (N, L, emb_width) -> audio (N, L * hop): `decoder(latents.transpose(1, 2))[:, 0]`."""
    convs = [m for m in decoder.modules() if isinstance(m, nn.Conv1d)]
    work = _Work(pad=max(8, *(m.dilation[0] * (m.kernel_size[0] // 2) for m in convs)), tile=tile)
    outs = []
    for item in latents:
        act = work.act(*item.shape)  # (L, emb_width)
        act.rows(0, act.length).copy_(item)
        for block in reversed(decoder.blocks):
            act = _step(work, act, _same_conv(act, block.proj, work))
            for up in block.ups:
                for res in up.res.blocks:
                    act = _step(work, act, _res_block(act, res, work))
                act = _step(work, act, _up_conv(act, up.conv, work))
        audio = _same_conv(act, decoder.out, work)  # (T, 1)
        work.release(act)
        outs.append(audio.rows(0, audio.length)[:, 0])
    return torch.stack(outs)


def _step(work: _Work, src: _Act, dst: _Act) -> _Act:
    work.release(src)
    return dst


# --------------------------------------------------------------------------------------------- encoder


def _conv(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    return nn.functional.conv1d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation)


@torch.no_grad()
def encode_exact(encoder: Encoder, x: torch.Tensor, tile: int = EXACT_TILE) -> torch.Tensor:
    """Audio (N, 1, T) -> latents (N, emb_width, T / hop), bit-identical to `encoder(x)`."""
    for block in encoder.blocks:
        for down in block.downs:
            x = _conv(down.conv, x)
            relu_x = torch.relu(x)
            for i, res in enumerate(down.res.blocks):
                hidden = _conv(res.conv1, relu_x)  # whole length: exactly the modules' call
                for start, stop in _tiles(x.shape[-1], tile, merge_last=True):
                    part = x[..., start:stop]
                    part.add_(_conv(res.conv2, hidden[..., start:stop].relu_()))  # x + y == y + x, exactly
                    if i + 1 < len(down.res.blocks):
                        torch.clamp(part, min=0, out=relu_x[..., start:stop])
        x = _conv(block.proj, x)
    return x


# --------------------------------------------------------------------------------------------- codebook


@torch.no_grad()
def nearest_codes(x: torch.Tensor, embed: torch.Tensor, tile: int = CODE_TILE) -> torch.Tensor:
    """Latents (M, C) -> index of the nearest row of `embed` (l_bins, C), as `Codebook._nearest(x)[0]`:
    the same expression and order of operations, (||x||² - 2 x·k) + ||k||², `tile` rows at a time."""
    k_w = embed.t()
    k_sq = torch.sum(k_w**2, dim=0, keepdim=True)  # (1, l_bins)
    codes = torch.empty(x.shape[0], dtype=torch.long)
    dist = torch.empty(min(tile, x.shape[0]), embed.shape[0])
    values = torch.empty(dist.shape[0])
    for start, stop in _tiles(x.shape[0], tile):
        rows, d = x[start:stop], dist[: stop - start]
        torch.mm(rows, k_w, out=d)
        d.mul_(-2).add_(torch.sum(rows**2, dim=-1, keepdim=True)).add_(k_sq)  # -2a + b == b - 2a, exactly
        torch.min(d, dim=-1, out=(values[: stop - start], codes[start:stop]))
    return codes
