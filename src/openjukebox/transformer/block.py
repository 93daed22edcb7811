"""Pre-LN residual blocks and the layer stack of the Jukebox priors (Jukebox paper §4, Appendix B.1).

Each block computes a = attn(LN0(x)); m = mlp(LN1(x + a)); h = x + a + m, with an MLP
Linear -> quick_gelu -> Linear. The stack has no final LayerNorm. `attn_order` picks the attention kind of each
layer (see attention.py); `attn_func_for_layer` is the schedule table of the original.

For incremental decoding, `Transformer.new_cache` gives one preallocated `KVCache` per layer (a
`TransformerCache`) and `Transformer.forward(x, cache=cache)` runs the next positions through every layer. One
position (sampling) goes through `ResAttnBlock.token_step` on 2-D (B, width) activations, calling the
submodules' weights directly: a step is a few dozen tensor ops per layer, so Python and module-call overhead is
kept out of it. `Transformer.use_decode_layout_` stores the weights column-major for faster one-row products, and
`Transformer.column_blocks` holds them as column blocks, one set per CPU core, while a window's tokens are drawn.
`Transformer.position_step` is the one-token step at a position held in a tensor, for CUDA graphs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from openjukebox.transformer.attention import ENC_DEC, FactoredAttention, KVCache, PositionSlots, _linear
from openjukebox.transformer.config import TransformerConfig

# attn_order -> kind of layer d. Orders 3, 4, 5 use the summary kinds (not implemented) and are left out.
_ROW_COL_PREV = [1, 2, 3]
ATTN_ORDERS: dict[int, Callable[[int], int]] = {
    0: lambda d: 0,  # all dense
    1: lambda d: [1, 2][d % 2],  # row, column
    2: lambda d: [1, 2, 3][d % 3],  # row, column, previous row: 5b, upsamplers, lyrics encoder
    6: lambda d: [1, 2, 3, 6][d % 4],
    7: lambda d: [*_ROW_COL_PREV * 5, 6][d % 16],
    8: lambda d: [*_ROW_COL_PREV * 3, 6][d % 10],  # small_sep_enc_dec
    9: lambda d: [1, 2, 3, 0][d % 4],
    10: lambda d: [*_ROW_COL_PREV * 3, *([*_ROW_COL_PREV * 3, 6] * 7)][d % 79],  # 5b_lyrics
    11: lambda d: [6, 6, 0][d % 3] if d % 16 == 15 else [1, 2, 3][d % 3],
    12: lambda d: [7, 7, 0][d % 3] if d % 16 == 15 else [1, 2, 3][d % 3],  # 1b_lyrics
}


def attn_func_for_layer(attn_order: int, d: int) -> int:
    """Attention kind of layer `d` under schedule `attn_order` (the original's codes)."""
    assert attn_order in ATTN_ORDERS, f"attn_order {attn_order} not supported (have {sorted(ATTN_ORDERS)})"
    return ATTN_ORDERS[attn_order](d)


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(1.702 x), the activation the released weights were trained with."""
    return x * torch.sigmoid(1.702 * x)


class LayerNorm(nn.LayerNorm):
    """LayerNorm (eps 1e-5) computed in fp32 and cast back to the input dtype, as the original."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and self.weight is not None and self.weight.dtype == torch.float32:
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)  # no casts to make
        # The affine parameters are upcast too, so a model cast to half precision still normalises in fp32.
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).type_as(x)


class MLP(nn.Module):
    """(B, T, width) -> Linear(width, hidden) -> quick_gelu -> Linear(hidden, width). [c_fc, c_proj]"""

    def __init__(self, width: int, hidden: int, zero_out: bool = False, init_scale: float = 1.0):
        super().__init__()
        self.fc = _linear(width, hidden, init_scale)
        self.proj = _linear(hidden, width, init_scale, zero=zero_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(quick_gelu(self.fc(x)))

    def forward_direct(self, x: torch.Tensor) -> torch.Tensor:
        """`forward` through `F.linear` on the weights, without submodule calls (the decoding path)."""
        h = F.linear(x, self.fc.weight, self.fc.bias)
        return F.linear(quick_gelu(h), self.proj.weight, self.proj.bias)


class ResAttnBlock(nn.Module):
    """One pre-LN block: h = x + a + mlp(LN1(x + a)) with a = attn(LN0(x)). [ln_0, attn, ln_1, mlp]"""

    def __init__(self, config: TransformerConfig, attn_func: int, zero_out: bool = False):
        super().__init__()
        self.attn_func = attn_func
        self.attn_norm = LayerNorm(config.width)
        self.attn = FactoredAttention(config, attn_func, zero_out=zero_out)
        self.mlp_norm = LayerNorm(config.width)
        self.mlp = MLP(config.width, config.mlp_hidden, zero_out=zero_out, init_scale=config.init_scale)

    def forward(
        self, x: torch.Tensor, encoder_kv: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> torch.Tensor:
        """x: (B, T, width); encoder_kv: (B, S, width) for cross-attention layers (teacher-forced); cache: this
        layer's KVCache for incremental decoding. Returns (B, T, width)."""
        if cache is not None:
            return self.forward_cached(x, cache)
        h = x + self.attn(self.attn_norm(x), encoder_kv if self.attn_func == ENC_DEC else None)
        return h + self.mlp(self.mlp_norm(h))  # x + a + m, summed left to right

    def forward_cached(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """The next positions of incremental decoding: x (B, L, width) -> (B, L, width); `cache` updated in place.

        Same arithmetic as `forward`, with the submodules' forwards called directly (sampling calls this once per
        layer per token, so module-call overhead counts; hooks are not run).
        """
        if x.shape[1] == 1:
            b, _, w = x.shape
            return self.token_step(x.view(b, w), cache).view(b, 1, w)
        h = x + self.attn._forward_cached(self.attn_norm.forward(x), cache)
        return h + self.mlp.forward_direct(self.mlp_norm.forward(h))

    def token_step(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One position of incremental decoding on 2-D activations: x (B, width) -> (B, width)."""
        h = x + self.attn.token_step(self.attn_norm.forward(x), cache)
        return h + self.mlp.forward_direct(self.mlp_norm.forward(h))

    def position_step(self, x: torch.Tensor, cache: KVCache, where: PositionSlots | None) -> torch.Tensor:
        """`token_step` at a position held in a tensor (`FactoredAttention.position_slots`), for CUDA graphs:
        x (B, width) -> (B, width); cache.length is not advanced. On a GPU each op is a kernel of its own even in a
        graph, so the LayerNorms run as one `F.layer_norm` each when their parameters have the activations' dtype
        (in half precision the kernel accumulates in fp32 and rounds once, as `LayerNorm`'s upcast does, up to its
        summation order) instead of five ops."""
        attn = self.attn
        qkv = F.linear(_layer_norm(self.attn_norm, x), attn.in_proj.weight, attn.in_proj.bias)
        h = x + F.linear(attn.position_attend(qkv, cache, where), attn.proj.weight, attn.proj.bias)
        return h + self.mlp.forward_direct(_layer_norm(self.mlp_norm, h))


def _layer_norm(norm: LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """`norm(x)` in one op where its parameters have x's dtype, else through its fp32 upcast."""
    if norm.weight is not None and norm.weight.dtype == x.dtype:
        return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    return norm.forward(x)


TokenStep = Callable[[torch.Tensor], torch.Tensor]  # (B, width) -> (B, width), one layer bound to its cache

# Column blocks pay where the weights are streamed from memory at every step: a stack whose linear weights fill
# less than BLOCK_MIN_TOTAL_BYTES stays in the CPU's caches (there addmm is as fast, and a step is bound by its
# per-op overhead instead), and a matrix under BLOCK_MIN_BYTES is too small for its blocks to be worth a call each.
BLOCK_MIN_TOTAL_BYTES = 64 << 20
BLOCK_MIN_BYTES = 256 << 10
BLOCK_MIN_COLUMNS = 64  # narrower blocks: fewer, wider ones
_BLOCKS_EXACT: dict[tuple[int, int, int, int, int], bool] = {}


def _block_parts(weight: torch.Tensor, batch: int, threads: int) -> int:
    """Column blocks to hold `weight` (out, in) in under `Transformer.column_blocks`, or 0 to leave it as it is.

    2 x threads blocks (fewer if they would be narrower than BLOCK_MIN_COLUMNS) for an fp32 CPU weight of at least
    BLOCK_MIN_BYTES in the decode layout whose blocked product gives `addmm`'s bits on this build (checked once
    per shape, batch and threads). One thread: 0 (as fast either way, so not worth the copies).
    """
    if threads < 2 or weight.device.type != "cpu" or weight.dtype != torch.float32 or weight.dim() != 2:
        return 0
    n_out, n_in = weight.shape
    if weight.numel() * 4 < BLOCK_MIN_BYTES or weight.stride() != (1, n_out):
        return 0
    parts = 2 * threads
    while parts > 1 and (n_out % parts or n_out // parts < BLOCK_MIN_COLUMNS):
        parts //= 2
    if parts < 2:
        return 0
    key = (n_in, n_out, parts, batch, threads)
    if key not in _BLOCKS_EXACT:
        g = torch.Generator().manual_seed(0)
        w_t, bias = torch.randn(n_in, n_out, generator=g), torch.randn(n_out, generator=g)
        blocks = w_t.unflatten(1, (parts, -1)).transpose(0, 1).contiguous()
        exact = True
        for rows in sorted({1, batch}):
            x = torch.randn(rows, n_in, generator=g)
            got = _blocked_addmm(bias.view(parts, 1, -1), x, blocks)
            exact = exact and torch.equal(got, torch.addmm(bias, x, w_t))
        _BLOCKS_EXACT[key] = exact
    return parts if _BLOCKS_EXACT[key] else 0


def _blocked_addmm(
    bias: torch.Tensor, x: torch.Tensor, blocks: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """`torch.addmm(bias, x, w)` for w (in, out) held as column blocks (P, in, out / P) and bias as (P, 1, out / P):
    one batched product over the blocks (the same sums per output element, in the same order), then the blocks'
    columns put side by side. x (B, in) -> (B, out), written into `out` when given."""
    parts, _, k = blocks.shape
    y = torch.baddbmm(bias, x.expand(parts, *x.shape), blocks).transpose(0, 1)  # (B, P, k)
    if out is None:
        return y.reshape(x.shape[0], parts * k)
    out.view(x.shape[0], parts, k).copy_(y)
    return out


def layer_token_step(
    layer: ResAttnBlock, cache: KVCache, blocks: dict[nn.Linear, torch.Tensor] | None = None
) -> TokenStep:
    """`layer.token_step` bound to `cache`, with every weight looked up and every buffer made once, here.

    Attribute access on an nn.Module goes through `Module.__getattr__`; a step touches some thirty weights and
    submodules per layer, which is a measurable share of a small model's per-token time. So are the wrappers
    around each op and each slice, so the step calls the ops `F.linear` and `F.layer_norm` resolve to (`addmm` on
    the transposed weight, `native_layer_norm`), has the input projection write into the buffer of the cache's
    `TokenAttention` and works in place on its own temporaries: the same arithmetic, op for op (sums and products
    are taken in the other order only where IEEE arithmetic is commutative): 15-17 tensor ops per layer. The
    function holds views of the Parameters' current storage: in-place changes (`load_state_dict` without
    assign, optimiser steps) are seen, a Parameter given new storage afterwards (`.data = ...`,
    `use_decode_layout_`) is not; caches are made after the weights are settled. Models whose LayerNorms are not
    fp32 use `layer.token_step` as is. `blocks`: the linears whose weights are held as column blocks
    (`Transformer.column_blocks`), multiplied by `_blocked_addmm` instead of `addmm`.
    """
    norms = (layer.attn_norm, layer.mlp_norm)
    if any(n.weight is None or n.bias is None or n.weight.dtype != torch.float32 for n in norms):
        return lambda x: layer.token_step(x, cache)
    shape, eps0, eps1 = layer.attn_norm.normalized_shape, layer.attn_norm.eps, layer.mlp_norm.eps
    w0, b0, w1, b1 = layer.attn_norm.weight, layer.attn_norm.bias, layer.mlp_norm.weight, layer.mlp_norm.bias
    attn, mlp = layer.attn, layer.mlp
    blocks = blocks or {}

    def product(linear: nn.Linear) -> tuple[Callable[..., torch.Tensor], torch.Tensor, torch.Tensor]:
        """(the product to call as addmm(bias, x, weight, out=...), its weight, its bias)."""
        if linear in blocks:
            w = blocks[linear]
            return _blocked_addmm, w, linear.bias.view(w.shape[0], 1, w.shape[2])
        return torch.addmm, linear.weight.t(), linear.bias

    (mm_in, in_t, in_b), (mm_out, out_t, out_b) = product(attn.in_proj), product(attn.proj)
    (mm_fc, fc_t, fc_b), (mm_mp, mp_t, mp_b) = product(mlp.fc), product(mlp.proj)
    norm = torch.native_layer_norm
    gelu_scale = torch.tensor(1.702, dtype=torch.float32, device=w0.device)  # a tensor multiplies faster than 1.702
    attend = attn.token_attention(cache)
    qkv = attend.qkv

    def step(x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or x.shape[0] != attend.batch:
            return layer.token_step(x, cache)  # raises on a batch the cache was not made for
        mm_in(in_b, norm(x, shape, w0, b0, eps0)[0], in_t, out=qkv)
        h = mm_out(out_b, attend(), out_t).add_(x)
        f = mm_fc(fc_b, norm(h, shape, w1, b1, eps1)[0], fc_t)
        f = f.mul(gelu_scale).sigmoid_().mul_(f)  # quick_gelu, f * sigmoid(1.702 f)
        return mm_mp(mp_b, f, mp_t).add_(h)

    return step


@dataclass
class TransformerCache:
    """One `KVCache` per layer of a `Transformer`; all layers have processed the same positions.

    steps: each layer's one-token step bound to its cache (`layer_token_step`), made with the cache.
    """

    layers: list[KVCache]
    steps: list[TokenStep] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Positions processed so far (the next call starts here)."""
        return self.layers[0].length if self.layers else 0

    @property
    def batch(self) -> int:
        return self.layers[0].key.shape[0]


class Transformer(nn.Module):
    """A stack of `config.depth` ResAttnBlocks whose attention kinds follow `config.attn_order`; no final LayerNorm.

    Schedules (ATTN_ORDERS): 0 dense, 2 row/column/previous-row, 10 5b_lyrics, 12 1b_lyrics, 8 small
    separate encoder-decoder. Cross-attention layers start with zeroed output projections, as in the original.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.width, self.n_ctx = config.width, config.n_ctx
        kinds = [attn_func_for_layer(config.attn_order, d) for d in range(config.depth)]
        self.layers = nn.ModuleList(ResAttnBlock(config, kind, zero_out=kind == ENC_DEC) for kind in kinds)

    @torch.no_grad()
    def use_decode_layout_(self) -> None:
        """Store the layers' linear weights column-major (as the original's (in, out) Conv1D weights), in place.

        A one-token step is a vector-matrix product per weight and is bound by reading the weights; on CPU the
        BLAS streams an (in, out) row-major matrix faster than our (out, in) one (about 10% over a whole stack,
        50% for the narrow attention output projections). Each weight keeps its shape and values (so state
        dicts, saving, training and the teacher-forced forward are unaffected); only its strides change, via one
        transposed copy per weight, made once (a no-op when already done) and never per step. CPU only.
        """
        for layer in self.layers:
            for linear in (layer.attn.in_proj, layer.attn.proj, layer.mlp.fc, layer.mlp.proj):
                w = linear.weight
                if w.device.type == "cpu" and w.dim() == 2 and w.is_contiguous() and min(w.shape) > 1:
                    w.data = w.data.t().contiguous().t()  # (out, in) shape, (in, out) memory

    @contextlib.contextmanager
    def column_blocks(self, cache: TransformerCache) -> Iterator[None]:
        """Within: the layers' linear weights (fp32, on the CPU, a stack too large for the CPU caches, several
        threads) held as column blocks (P, in, out / P), and `cache`'s one-token steps multiplying by them with one
        batched product (`_blocked_addmm`) instead of `addmm`.

        A one-row `addmm` streams the weights on one core (~22 GB/s on this machine, on 1 thread or 2); the batched
        product gives each core its own blocks (P = 2 x threads), each read front to back: ~41 GB/s on 2 threads
        over the `small` prior's weights (BENCHMARKS.md). Every output element is the same sum in the same order,
        so the tokens are the same bits: checked once per (shape, batch, threads) and process against `addmm`, and
        a weight that fails the check is left as it is. The weights' own storage is given up meanwhile (the blocks
        are not a second copy) and rebuilt on exit, one weight at a time: same values, same layout. Inside, only
        the cache's one-token steps may use the layers (priming several positions at a time comes before); the
        cache's steps are rebuilt on entry and cleared on exit. With nothing to block, nothing is touched.
        """
        threads = torch.get_num_threads()
        linears = [
            linear
            for layer in self.layers
            for linear in (layer.attn.in_proj, layer.attn.proj, layer.mlp.fc, layer.mlp.proj)
        ]
        if sum(linear.weight.numel() * linear.weight.element_size() for linear in linears) < BLOCK_MIN_TOTAL_BYTES:
            linears = []
        parts = {linear: _block_parts(linear.weight, cache.batch, threads) for linear in linears}
        parts = {linear: p for linear, p in parts.items() if p}
        if not parts:
            yield
            return
        blocks: dict[nn.Linear, torch.Tensor] = {}
        cache.steps = []  # the old steps hold views of the weights' storage
        try:
            with torch.inference_mode(False), torch.no_grad():  # normal tensors: the weights outlive this window
                for linear, p in parts.items():
                    w_t = linear.weight.data.t()  # (in, out), contiguous in the decode layout
                    blocks[linear] = w_t.unflatten(1, (p, -1)).transpose(0, 1).contiguous()
                    linear.weight.data = w_t.new_empty(0)
            cache.steps = [layer_token_step(layer, c, blocks) for layer, c in zip(self.layers, cache.layers)]
            yield
        finally:
            cache.steps = []
            with torch.inference_mode(False), torch.no_grad():
                while blocks:  # each block freed as soon as its weight is back
                    linear, b = blocks.popitem()
                    linear.weight.data = b.transpose(0, 1).flatten(1).t()  # (out, in), (in, out) memory

    @property
    def attn_funcs(self) -> list[int]:
        """Attention kind of each layer."""
        return [layer.attn_func for layer in self.layers]

    def new_cache(
        self, batch: int, encoder_kv: torch.Tensor | None = None, length: int | None = None
    ) -> TransformerCache:
        """Empty per-layer caches for decoding `batch` sequences.

        Args:
            encoder_kv: (batch, encoder_dims, width) if any layer is cross-attention; its keys and values are
                computed here, once.
            length: positions that will be decoded (default n_ctx); a shorter decode allocates less.
        """
        has_enc_dec = ENC_DEC in self.attn_funcs
        assert (encoder_kv is not None) == has_enc_dec, (
            "encoder_kv is required by, and only by, a stack with cross-attention layers"
        )
        caches = [
            layer.attn.new_cache(batch, encoder_kv if layer.attn_func == ENC_DEC else None, length)
            for layer in self.layers
        ]
        return TransformerCache(caches, [layer_token_step(layer, c) for layer, c in zip(self.layers, caches)])

    def token_steps(self, cache: TransformerCache) -> list[TokenStep]:
        """The one-token steps of `cache` (made, and kept in it, on first use if the cache came without)."""
        assert len(cache.layers) == len(self.layers), "cache built for another stack"
        if not cache.steps:
            cache.steps = [layer_token_step(layer, c) for layer, c in zip(self.layers, cache.layers)]
        return cache.steps

    def position_step(self, x: torch.Tensor, cache: TransformerCache, position: torch.Tensor) -> torch.Tensor:
        """One position of incremental decoding at the position held in `position` ((1,) long, on the weights'
        device): x (B, width) -> (B, width), every layer's cache written at that position. The same ops and shapes
        at every position and no value read back to the host, so the step can be captured as a CUDA graph and
        replayed (`prior.decode`); each attention kind's slots and mask are computed once per step and shared by
        its layers. cache.length is not advanced. Agrees with the one-token `forward` to rounding."""
        assert len(cache.layers) == len(self.layers), "cache built for another stack"
        shared: dict[tuple[int, int], PositionSlots] = {}
        for layer, layer_cache in zip(self.layers, cache.layers):
            where = None
            if layer.attn_func != ENC_DEC:
                key = (layer.attn_func, layer_cache.key.shape[1])
                where = shared.get(key)
                if where is None:
                    where = shared[key] = layer.attn.position_slots(position, key[1])
            x = layer.position_step(x, layer_cache, where)
        return x

    def forward(
        self, x: torch.Tensor, encoder_kv: torch.Tensor | None = None, cache: TransformerCache | None = None
    ) -> torch.Tensor:
        """x: (B, T, width); encoder_kv: (B, encoder_dims, width) if any layer is cross-attention.

        With `cache` (from `new_cache`), x holds positions cache.length .. cache.length + T - 1 and encoder_kv
        must be None (the cache holds the cross-attention keys); the cache is updated in place.
        Returns (B, T, width) in the input dtype.
        """
        if cache is not None:
            assert encoder_kv is None, "with a cache, encoder_kv goes into new_cache"
            assert len(cache.layers) == len(self.layers), "cache built for another stack"
            b, n, w = x.shape
            if n == 1:  # one token: 2-D activations (B, width) through every layer, fewer ops per step
                h = x.view(b, w)
                for step in cache.steps or self.token_steps(cache):
                    h = step(h)
                return h.view(b, 1, w)
            for layer, layer_cache in zip(self.layers, cache.layers):
                x = layer.forward_cached(x, layer_cache)
            return x
        for layer in self.layers:
            x = layer(x, encoder_kv)
        return x
