"""Factored (sparse) self-attention of the Jukebox priors (Jukebox paper §4, Appendix B.1; Sparse Transformers).

A sequence of length T is viewed as a grid of `blocks` rows of `block_ctx = n_ctx // blocks` positions. Each
layer uses one attention kind (`attn_func`, the original's codes):

| kind | name            | a query at position t attends to                                     | mask   |
|------|-----------------|----------------------------------------------------------------------|--------|
| 0    | dense           | every position <= t                                                  | causal |
| 1    | block (row)     | positions <= t in its own row                                        | causal |
| 2    | transpose block | positions <= t in its own column (same index within the row)         | causal |
| 3    | previous block  | the whole previous row (all-zero keys/values for row 0)              | none   |
| 6    | encoder-decoder | every encoder position (`encoder_kv`, e.g. the lyrics encoder)       | none   |
| 7    | prime           | positions <= t among the first `(prime_len // blocks + 1) * blocks`   | causal |

Rows, columns and previous rows are rearranged into a batch of short dense sequences so that every kind runs
through `torch.nn.functional.scaled_dot_product_attention`; only the prime kind needs an explicit mask (its
keys are a prefix, so it is not square). The summary kinds 4 and 5 are not used by released models and are
not implemented.

Incremental decoding (sampling, Jukebox paper §4; the original's `sample=True` path): `new_cache` preallocates a
`KVCache` once per layer, and `forward(x, cache=cache)` takes the next L positions (one token, or a chunk of a
prompt of any length), writes their keys/values into the cache and attends to exactly the keys the teacher-forced
forward would. Each kind keeps only what later queries can still see:

| kind | cache slots (per sample)  | layout                                                         |
|------|---------------------------|----------------------------------------------------------------|
| 0    | n_ctx                     | position p at slot p                                           |
| 1    | block_ctx                 | the current row, position p at slot p % block_ctx              |
| 2    | n_ctx                     | column-major: position p at slot (p % block_ctx) * blocks + p // block_ctx |
| 3    | 2 * block_ctx             | the previous and the current row, row r at rows slot r % 2     |
| 6    | encoder_dims              | keys/values of `encoder_kv`, computed once in `new_cache`      |
| 7    | prime keys                | the key prefix only; later positions are never stored          |

Keys are stored already multiplied by d_head^-1/4. Chunks are padded to whole rows and run through the same
row/column arrangement as the teacher-forced forward, so cached logits equal the teacher-forced ones up to float
rounding. `new_cache(..., length=L)` sizes the dense and column caches for the first L positions only (a short
window need not allocate, and zero, n_ctx slots per layer); the column layout then has ceil(L / block_ctx) rows
per column.

Speed (sampling is one call per token, so per-call overhead counts): a single new position takes `token_step`
on 2-D (B, width) activations. It computes the fused q/k/v projection once, writes the scaled key and the value
into their slot with one op (`torch.mul(kv, kv_scale, out=slot)`, keys and values sharing one buffer) and runs
SDPA on views of the cached keys already split into heads: no padding, concatenation, mask or copy. The cached
path calls `F.linear` on the layer's weights directly rather than through the submodules (no module-call
overhead; forward hooks on `in_proj`/`proj` are not run while decoding). Weights are read once per step, in place.
That step is a `TokenAttention` bound to the cache, with its buffers and views made once (the fp32 sampling path of
`block.layer_token_step` has the projection write straight into its buffer).

For CUDA graphs the same step also exists with the position held in a tensor (`position_slots`,
`position_attend`): the slot written and the keys seen are computed on the device, and the query attends to a
fixed set of slots (its row, column, ring row, prime prefix or the whole dense cache) with the ones it may not see
masked out, so every position runs the same kernels on the same shapes.

Fidelity: q and k are each scaled by d_head^-1/4 before the product (the original's training path) and the
score scale passed to SDPA is 1; the original's sampling path scales the product by d_head^-1/2 instead, equal up
to rounding. For fp16/bf16 inputs the fused SDPA kernels accumulate the softmax in fp32, as the original did by
upcasting the scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from openjukebox.transformer.config import TransformerConfig

DENSE, BLOCK, TRANSPOSE_BLOCK, PREV_BLOCK, SUMMARY, SUMMARY_SPREAD, ENC_DEC, PRIME = range(8)
SUPPORTED_KINDS = (DENSE, BLOCK, TRANSPOSE_BLOCK, PREV_BLOCK, ENC_DEC, PRIME)


def prime_keys_len(prime_len: int, blocks: int) -> int:
    """Number of keys prime attention sees: `(prime_len // blocks + 1) * blocks`.

    The original multiplies by `blocks`, not `block_ctx`; for 1b_lyrics (prime_len 384, blocks 64) this is 448, so
    the prefix also holds the first 64 music positions. Copied as is to load the released weights.
    """
    return (prime_len // blocks + 1) * blocks


def _linear(n_in: int, n_out: int, init_scale: float, zero: bool = False) -> nn.Linear:
    """Linear with the original Conv1D init: weight N(0, 0.02*init_scale) (or zeros), bias zeros."""
    layer = nn.Linear(n_in, n_out)
    if zero:
        nn.init.zeros_(layer.weight)
    else:
        nn.init.normal_(layer.weight, std=0.02 * init_scale)
    nn.init.zeros_(layer.bias)
    return layer


@dataclass
class KVCache:
    """Keys and values one attention layer keeps while decoding (see `FactoredAttention.new_cache`).

    key, value: (B, slots, n_state), preallocated once; `slots` and the position -> slot map depend on the kind
    (module docstring); keys are stored multiplied by `FactoredAttention.qk_scale`. capacity: positions it can
    take. length: positions processed so far (the next call starts at this position).

    Self-attention kinds keep keys and values side by side in one buffer, `kv` (B, slots, 2 * n_state), of which
    key and value are views, so that one op writes a new position's scaled key and its value: `kv_scale`
    (2 * n_state,), fp32, holds qk_scale for the key half and exactly 1 for the value half. key_heads, value_heads:
    (B, heads, slots, d_head) views of the same memory, the layout attention reads. None for cross-attention.
    """

    key: torch.Tensor
    value: torch.Tensor
    capacity: int  # positions the cache can take (n_ctx unless built for a shorter decode)
    length: int = 0
    kv: torch.Tensor | None = None
    kv_scale: torch.Tensor | None = None
    key_heads: torch.Tensor | None = None
    value_heads: torch.Tensor | None = None
    attention: TokenAttention | None = None  # the one-position step bound to this cache, made on first use


@dataclass
class PositionSlots:
    """Where one position's key goes in a self-attention cache and which slots its query sees, as tensors computed
    from a position held in a tensor (`FactoredAttention.position_slots`); shared by the layers of one kind.

    slot: (1,) long, the slot written. keep: (1,) bool, whether the key is stored at all (prime attention only).
    select: (1,) long, the column (transpose block) or ring row (previous row) the query reads, or None for the
    whole cache. mask: (1, 1, 1, keys) bool, True where the query may attend, or None for every key.
    """

    slot: torch.Tensor
    keep: torch.Tensor | None = None
    select: torch.Tensor | None = None
    mask: torch.Tensor | None = None


class FactoredAttention(nn.Module):
    """One attention layer of kind `attn_func` over a (B, T, width) sequence.

    Args:
        config: the stack's shape; this layer uses width, n_state (= m_attn * width) split over heads, n_ctx and
            blocks (block_ctx = n_ctx // blocks, kinds 1, 2, 3, 7), encoder_dims (kind 6), prime_len (kind 7)
            and init_scale (scales the N(0, 0.02) weight init).
        attn_func: the attention kind (see module docstring).
        zero_out: initialise `proj` to zero (the original does this for encoder-decoder layers).

    Parameters (original names in brackets; see keys.py): `in_proj` [c_attn] fused q,k,v (q only for kind 6),
    `enc_kv` [c_enc_kv] k,v from encoder_kv (kind 6 only), `proj` [c_proj].
    """

    def __init__(self, config: TransformerConfig, attn_func: int, zero_out: bool = False):
        super().__init__()
        assert attn_func in SUPPORTED_KINDS, f"attention kind {attn_func} not implemented (have {SUPPORTED_KINDS})"
        width, n_state, init_scale = config.width, config.n_state, config.init_scale
        self.width, self.n_state, self.heads, self.n_ctx = width, n_state, config.heads, config.n_ctx
        self.attn_func = attn_func
        self.blocks = config.blocks
        self.encoder_dims = config.encoder_dims
        self.prime_len = config.prime_len
        if attn_func in (BLOCK, TRANSPOSE_BLOCK, PREV_BLOCK, PRIME):
            assert self.blocks is not None, f"attention kind {attn_func} needs blocks"
        if attn_func == PRIME:
            assert self.prime_len is not None, "prime attention needs prime_len"
        if attn_func == ENC_DEC:
            assert self.encoder_dims, "encoder-decoder attention needs encoder_dims"
            self.in_proj = _linear(width, n_state, init_scale)
            self.enc_kv = _linear(width, 2 * n_state, init_scale)
        else:
            self.in_proj = _linear(width, 3 * n_state, init_scale)
        self.proj = _linear(n_state, width, init_scale, zero=zero_out)

    @property
    def block_ctx(self) -> int:
        assert self.blocks is not None
        return self.n_ctx // self.blocks

    @property
    def prime_keys(self) -> int:
        """Length of the key prefix prime attention sees."""
        assert self.prime_len is not None and self.blocks is not None
        return prime_keys_len(self.prime_len, self.blocks)

    @property
    def qk_scale(self) -> float:
        """d_head^-1/4, applied to q and to k each, as the original's training path."""
        return (self.n_state // self.heads) ** -0.25

    def _attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        is_causal: bool = False,
        mask: torch.Tensor | None = None,
        k_scaled: bool = False,
    ) -> torch.Tensor:
        """Multi-head attention over already-gathered sequences.

        Args:
            q: (N, Lq, n_state); k, v: (N, Lk, n_state).
            is_causal: causal mask (Lq == Lk here). mask: optional (Lq, Lk) bool, True = may attend.
            k_scaled: k is already multiplied by `qk_scale` (cached keys are stored that way).
        Returns:
            (N, Lq, n_state)
        """
        n, lq, _ = q.shape
        d_head = self.n_state // self.heads
        scale = self.qk_scale
        q = (q * scale).view(n, lq, self.heads, d_head).transpose(1, 2)  # (N, H, Lq, dh)
        if not k_scaled:
            k = k * scale
        k = k.view(n, k.shape[1], self.heads, d_head).transpose(1, 2)  # (N, H, Lk, dh)
        v = v.view(n, v.shape[1], self.heads, d_head).transpose(1, 2)  # (N, H, Lk, dh)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=1.0)
        return a.transpose(1, 2).reshape(n, lq, self.n_state)  # (N, Lq, n_state)

    def forward(
        self, x: torch.Tensor, encoder_kv: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> torch.Tensor:
        """Teacher-forced attention, or the next positions of incremental decoding when `cache` is given.

        Args:
            x: (B, T, width). Teacher-forced: T must be a multiple of block_ctx for kinds 1-3 and equal n_ctx for
                kind 7. With a cache: positions cache.length .. cache.length + T - 1, any T.
            encoder_kv: (B, encoder_dims, width), kind 6 only, teacher-forced only (a cache holds its keys).
            cache: this layer's `KVCache` from `new_cache`; updated in place.
        Returns:
            (B, T, width)
        """
        if cache is not None:
            assert encoder_kv is None, "with a cache, encoder_kv goes into new_cache"
            return self._forward_cached(x, cache)
        b, t, _ = x.shape
        kind = self.attn_func
        if kind == ENC_DEC:
            assert encoder_kv is not None, "encoder-decoder attention needs encoder_kv"
            assert encoder_kv.shape[1] == self.encoder_dims, (
                f"encoder_kv {tuple(encoder_kv.shape)} != {self.encoder_dims}"
            )
            q = self.in_proj(x)  # (B, T, n_state)
            k, v = self.enc_kv(encoder_kv.type_as(x)).chunk(2, dim=-1)  # (B, S, n_state) each
            return self.proj(self._attend(q, k, v))
        assert encoder_kv is None, f"attention kind {kind} takes no encoder_kv"
        q, k, v = self.in_proj(x).chunk(3, dim=-1)  # (B, T, n_state) each
        if kind == DENSE:
            a = self._attend(q, k, v, is_causal=True)
        elif kind == PRIME:
            assert t == self.n_ctx, f"prime attention needs the full context {self.n_ctx}, got {t}"
            p = self.prime_keys
            mask = torch.ones(t, p, dtype=torch.bool, device=x.device).tril()  # query i sees keys j <= i
            a = self._attend(q, k[:, :p], v[:, :p], mask=mask)
        else:
            bc = self.block_ctx
            assert t % bc == 0, f"length {t} is not a multiple of block_ctx {bc}"
            nb = t // bc
            if kind == BLOCK:
                rows = [z.reshape(b * nb, bc, self.n_state) for z in (q, k, v)]  # (B*nb, bc, n_state)
                a = self._attend(*rows, is_causal=True).view(b, t, self.n_state)
            elif kind == TRANSPOSE_BLOCK:

                def cols(z: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B*bc, nb, C)
                    return z.view(b, nb, bc, self.n_state).transpose(1, 2).reshape(b * bc, nb, self.n_state)

                a = self._attend(cols(q), cols(k), cols(v), is_causal=True)  # (B*bc, nb, n_state)
                a = a.view(b, bc, nb, self.n_state).transpose(1, 2).reshape(b, t, self.n_state)
            else:  # PREV_BLOCK: keys are the previous row; row 0 sees zeros (so its output is proj's bias)

                def prev(z: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B*nb, bc, C), rows shifted down
                    z = z.view(b, nb, bc, self.n_state)[:, :-1]
                    return F.pad(z, (0, 0, 0, 0, 1, 0)).reshape(b * nb, bc, self.n_state)

                a = self._attend(q.reshape(b * nb, bc, self.n_state), prev(k), prev(v)).view(b, t, self.n_state)
        return self.proj(a)

    # -- incremental decoding ------------------------------------------------------------------------------------

    def cache_slots(self, length: int | None = None) -> int:
        """Positions per sample this layer's cache keeps (module docstring), for decoding `length` positions
        (default n_ctx)."""
        kind = self.attn_func
        length = self.n_ctx if length is None else length
        if kind == BLOCK:
            return self.block_ctx
        if kind == PREV_BLOCK:
            return 2 * self.block_ctx
        if kind == ENC_DEC:
            assert self.encoder_dims is not None
            return self.encoder_dims
        if kind == PRIME:
            return self.prime_keys
        if kind == TRANSPOSE_BLOCK:  # whole rows, so that every column holds the same number of rows
            return -(-length // self.block_ctx) * self.block_ctx
        return length  # DENSE

    def new_cache(self, batch: int, encoder_kv: torch.Tensor | None = None, length: int | None = None) -> KVCache:
        """An empty cache for `batch` sequences, in this layer's dtype and device.

        Args:
            encoder_kv: (batch, encoder_dims, width), required by (and only by) cross-attention layers, whose keys
                and values are computed here once for the whole decode.
            length: positions that will be decoded (1 .. n_ctx, default n_ctx); the dense and column caches hold
                only these.
        """
        length = self.n_ctx if length is None else length
        assert 1 <= length <= self.n_ctx, f"cache length {length} not in [1, {self.n_ctx}]"
        weight = self.in_proj.weight
        if self.attn_func == ENC_DEC:
            assert encoder_kv is not None, "encoder-decoder attention needs encoder_kv"
            assert encoder_kv.shape == (batch, self.encoder_dims, self.width), (
                f"encoder_kv {tuple(encoder_kv.shape)} != {(batch, self.encoder_dims, self.width)}"
            )
            k, v = self.enc_kv(encoder_kv.type_as(weight)).chunk(2, dim=-1)  # (B, S, n_state) each
            return KVCache((k * self.qk_scale).contiguous(), v.contiguous(), capacity=length)
        # Zeros, not empty: slots a padded query may read must hold finite values.
        slots, c = self.cache_slots(length), self.n_state
        kv = weight.new_zeros(batch, slots, 2 * c)
        key, value = kv[..., :c], kv[..., c:]  # (B, slots, n_state) views
        # fp32 (as a Python scalar multiplies), so half-precision keys are rounded once, as in the chunked path.
        kv_scale = torch.cat(
            [weight.new_full((c,), self.qk_scale, dtype=torch.float32), weight.new_ones(c, dtype=torch.float32)]
        )
        heads = (batch, slots, self.heads, c // self.heads)
        return KVCache(
            key,
            value,
            capacity=length,
            kv=kv,
            kv_scale=kv_scale,
            key_heads=key.view(heads).transpose(1, 2),
            value_heads=value.view(heads).transpose(1, 2),
        )

    def _check_cache(self, cache: KVCache, b: int, start: int, n: int) -> None:
        assert cache.key.shape[0] == b, f"cache batch {cache.key.shape[0]} != input batch {b}"
        assert start + n <= cache.capacity, (
            f"positions {start}..{start + n - 1} exceed n_ctx={self.n_ctx}"
            if cache.capacity == self.n_ctx
            else f"positions {start}..{start + n - 1} exceed the cache length {cache.capacity}"
        )

    def _forward_cached(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """x: (B, L, width) at positions start .. start + L - 1 (start = cache.length). Returns (B, L, width)."""
        b, n, _ = x.shape
        if n == 1:
            return self.token_step(x.view(b, self.width), cache).view(b, 1, self.width)
        start, kind = cache.length, self.attn_func
        self._check_cache(cache, b, start, n)
        if kind == ENC_DEC:
            a = self._attend(F.linear(x, self.in_proj.weight, self.in_proj.bias), cache.key, cache.value, k_scaled=True)
        else:
            q, k, v = F.linear(x, self.in_proj.weight, self.in_proj.bias).chunk(3, dim=-1)  # (B, L, n_state) each
            k = k * self.qk_scale  # stored scaled, so no step rescales the whole cache
            a = _CHUNK_STEPS[kind](self, q, k, v, cache, start)
        cache.length = start + n
        return F.linear(a, self.proj.weight, self.proj.bias)

    def token_step(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One new position (start = cache.length) of incremental decoding: x (B, width) -> (B, width).

        Same arithmetic as the chunked steps (the scaled key stored, the query scaled in `_attend`), on 2-D
        activations, with the key and value written straight into their slot and the keys this query sees taken
        as one contiguous view of the cache: no padding, concatenation or mask.
        """
        a = self.token_attend(F.linear(x, self.in_proj.weight, self.in_proj.bias), cache)
        return F.linear(a, self.proj.weight, self.proj.bias)

    def token_attend(self, qkv: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """The attention of `token_step` between the two projections: qkv (B, 3 * n_state) (q only, (B, n_state),
        for cross-attention) -> (B, n_state); stores the new key and value and advances cache.length.

        Runs the cache's `TokenAttention` on a copy of qkv (the fp32 sampling path writes its projection straight
        into that buffer instead: `block.layer_token_step`).
        """
        attend = self.token_attention(cache)
        if qkv.shape != attend.qkv.shape:
            self._check_cache(cache, qkv.shape[0], cache.length, 1)  # raises on another batch
            raise ValueError(f"qkv of shape {tuple(qkv.shape)}, expected {tuple(attend.qkv.shape)}")
        attend.qkv.copy_(qkv)
        return attend()

    def token_attention(self, cache: KVCache) -> TokenAttention:
        """This layer's one-position step bound to `cache` (made once, kept on the cache)."""
        if cache.attention is None:
            cache.attention = TokenAttention(self, cache)
        return cache.attention

    def token_slots(self, start: int, slots: int) -> tuple[int | None, tuple[int, int] | None]:
        """Where position `start`'s key goes in a self-attention cache of `slots` slots (None: never seen again)
        and the slots [lo, hi) its query attends to (None: all-zero keys, row 0 of previous-row attention)."""
        kind = self.attn_func
        if kind == DENSE:
            return start, (0, start + 1)
        if kind == BLOCK:
            slot = start % self.block_ctx
            return slot, (0, slot + 1)
        if kind == TRANSPOSE_BLOCK:
            bc = self.block_ctx
            row, col = divmod(start, bc)
            rows = slots // bc  # rows per column in the column-major layout
            slot = col * rows + row
            return slot, (col * rows, slot + 1)
        if kind == PREV_BLOCK:
            bc = self.block_ctx
            first, done = divmod(start, bc)
            prev = ((first - 1) % 2) * bc
            return (first % 2) * bc + done, ((prev, prev + bc) if first > 0 else None)
        assert kind == PRIME, f"no single-token slots for attention kind {kind}"
        p = self.prime_keys  # only the key prefix is stored and seen
        return (start if start < p else None), (0, min(start + 1, p))

    # -- the same step at a position held in a tensor (CUDA graphs) ---------------------------------------------

    def position_slots(self, position: torch.Tensor, slots: int) -> PositionSlots:
        """`token_slots` for the position in `position` ((1,) long, on the cache's device), as tensors: the same ops
        and shapes at every position, so that a step built on them can be captured once and replayed (no
        position is read back to the host). The query sees a fixed set of slots, the ones `token_slots` gives
        and, masked out, the rest of its row, column, dense cache or prime prefix. Cross-attention needs none."""
        kind, device = self.attn_func, position.device

        def upto(n: int, last: torch.Tensor) -> torch.Tensor:  # (1, 1, 1, n): slots 0 .. last may be attended
            return (torch.arange(n, device=device) <= last).view(1, 1, 1, n)

        if kind == DENSE:
            return PositionSlots(slot=position, mask=upto(slots, position))
        if kind == PRIME:
            p = self.prime_keys  # only the key prefix is stored and seen; later keys are not written
            return PositionSlots(slot=position.clamp(max=p - 1), keep=position < p, mask=upto(p, position))
        bc = self.block_ctx
        row, col = torch.div(position, bc, rounding_mode="floor"), position.remainder(bc)
        if kind == BLOCK:
            return PositionSlots(slot=col, mask=upto(bc, col))
        if kind == TRANSPOSE_BLOCK:
            rows = slots // bc
            return PositionSlots(slot=col * rows + row, select=col, mask=upto(rows, row))
        assert kind == PREV_BLOCK, f"no position slots for attention kind {kind}"
        # Row r's keys are ring row r % 2; the previous ring row of row 0 was never written, so it holds the zeros
        # the cache was made with, and attending to all-zero keys and values gives exactly the zeros
        # `TokenAttention` returns there.
        return PositionSlots(slot=row.remainder(2) * bc + col, select=(row + 1).remainder(2))

    def position_attend(self, qkv: torch.Tensor, cache: KVCache, where: PositionSlots | None) -> torch.Tensor:
        """`token_attend` at the position `where` was made for (`position_slots`; None for cross-attention):
        qkv (B, 3 * n_state) (q only for cross-attention) -> (B, n_state). Stores the new key and value; does not
        advance cache.length (the caller, which holds the position, does). The same products as `TokenAttention`
        (key and query times the fp32 qk_scale, rounded once into qkv's dtype; SDPA with scale 1); the masked slots
        add exact zeros, but the kernels may sum over more keys in another order, so results agree to rounding,
        not bit for bit."""
        b, c = qkv.shape[0], self.n_state
        d_head = c // self.heads
        if self.attn_func == ENC_DEC:
            return self._attend(qkv.view(b, 1, c), cache.key, cache.value, k_scaled=True).view(b, c)
        assert where is not None and cache.kv is not None and cache.kv_scale is not None
        assert cache.key_heads is not None and cache.value_heads is not None
        new = torch.mul(qkv[:, c:], cache.kv_scale, out=qkv.new_empty(b, 2 * c))  # key * qk_scale, value * 1
        if where.keep is not None:  # prime: past the prefix, the slot keeps what it holds
            new = torch.where(where.keep, new, cache.kv.index_select(1, where.slot).view(b, 2 * c))
        cache.kv.index_copy_(1, where.slot, new.view(b, 1, 2 * c))
        q = torch.mul(qkv[:, :c], cache.kv_scale[:c], out=qkv.new_empty(b, c)).view(b, self.heads, 1, d_head)
        keys, values = cache.key_heads, cache.value_heads  # (B, H, slots, d_head)
        if where.select is not None:  # one column (transpose block) or ring row (previous row) of the cache
            groups = self.block_ctx if self.attn_func == TRANSPOSE_BLOCK else 2
            keys, values = (z.unflatten(2, (groups, -1)).index_select(2, where.select)[:, :, 0] for z in (keys, values))
        a = F.scaled_dot_product_attention(q, keys, values, attn_mask=where.mask, scale=1.0)  # (B, H, 1, d_head)
        return a.reshape(b, c)

    def _dense_step(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache, start: int
    ) -> torch.Tensor:
        end = start + q.shape[1]
        cache.key[:, start:end] = k
        cache.value[:, start:end] = v
        mask = self._offset_causal(q.shape[1], end, start, q.device)
        return self._attend(q, cache.key[:, :end], cache.value[:, :end], mask=mask, k_scaled=True)

    def _prime_step(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache, start: int
    ) -> torch.Tensor:
        n, p = q.shape[1], self.prime_keys
        if start < p:  # only the prefix is ever attended to
            stored = min(n, p - start)
            cache.key[:, start : start + stored] = k[:, :stored]
            cache.value[:, start : start + stored] = v[:, :stored]
        seen = min(start + n, p)
        mask = self._offset_causal(n, seen, start, q.device)
        return self._attend(q, cache.key[:, :seen], cache.value[:, :seen], mask=mask, k_scaled=True)

    def _block_step(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache, start: int
    ) -> torch.Tensor:
        b, n, c = q.shape
        bc = self.block_ctx
        done = start % bc  # positions of the current row already in the cache (slots 0 .. done - 1)
        pad = -(done + n) % bc
        # Whole rows from the start of the current row: cached part, new positions, padding.
        keys = torch.cat([cache.key[:, :done], k, k.new_zeros(b, pad, c)], dim=1)  # (B, R*bc, C)
        values = torch.cat([cache.value[:, :done], v, v.new_zeros(b, pad, c)], dim=1)
        rows = keys.shape[1] // bc
        qs = F.pad(q, (0, 0, done, pad))  # (B, R*bc, C)
        a = self._attend(*(z.reshape(b * rows, bc, c) for z in (qs, keys, values)), is_causal=True, k_scaled=True)
        cache.key.copy_(keys[:, -bc:])  # the last (possibly partial) row; its padding is overwritten before use
        cache.value.copy_(values[:, -bc:])
        return a.reshape(b, rows * bc, c)[:, done : done + n]

    def _transpose_block_step(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache, start: int
    ) -> torch.Tensor:
        b, n, c = q.shape
        bc, end = self.block_ctx, start + n
        # Column-major: position p at [p % bc, p // bc], so a column's keys so far are one contiguous run.
        cols_k = cache.key.view(b, bc, -1, c)  # (B, bc, rows, C), rows = blocks unless the cache is shorter
        cols_v = cache.value.view(b, bc, -1, c)
        positions = torch.arange(start, end, device=q.device)
        cols_k[:, positions % bc, positions // bc] = k
        cols_v[:, positions % bc, positions // bc] = v
        first, last = start // bc, (end - 1) // bc
        rows, done = last - first + 1, start - first * bc
        qs = F.pad(q, (0, 0, done, rows * bc - done - n))  # (B, rows*bc, C): whole rows first .. last
        qs = qs.view(b, rows, bc, c).transpose(1, 2).reshape(b * bc, rows, c)  # (B*bc, rows, C)
        # Key rows 0 .. last of every column, a view of the cache; slots after `end` in row `last` are only
        # seen by padded queries.
        keys = cols_k[:, :, : last + 1].reshape(b * bc, last + 1, c)
        values = cols_v[:, :, : last + 1].reshape(b * bc, last + 1, c)
        mask = self._offset_causal(rows, last + 1, first, q.device)  # query row first + i sees key rows <= it
        a = self._attend(qs, keys, values, mask=mask, k_scaled=True)  # (B*bc, rows, C)
        a = a.view(b, bc, rows, c).transpose(1, 2).reshape(b, rows * bc, c)
        return a[:, done : done + n]

    def _prev_block_step(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache, start: int
    ) -> torch.Tensor:
        b, n, c = q.shape
        bc = self.block_ctx
        ring_k, ring_v = cache.key.view(b, 2, bc, c), cache.value.view(b, 2, bc, c)  # row r in slot r % 2
        first, done = divmod(start, bc)
        pad = -(done + n) % bc
        zero_row = k.new_zeros(b, bc, c)
        prev_k = ring_k[:, (first - 1) % 2] if first > 0 else zero_row
        prev_v = ring_v[:, (first - 1) % 2] if first > 0 else zero_row
        # Rows first - 1 .. last: the previous row, the cached part of the current one, new positions, padding.
        keys = torch.cat([prev_k, ring_k[:, first % 2, :done], k, k.new_zeros(b, pad, c)], dim=1)  # (B, (R+1)*bc, C)
        values = torch.cat([prev_v, ring_v[:, first % 2, :done], v, v.new_zeros(b, pad, c)], dim=1)
        rows = keys.shape[1] // bc - 1
        last = first + rows - 1
        qs = F.pad(q, (0, 0, done, pad)).reshape(b * rows, bc, c)  # query row i attends key row i (one above)
        a = self._attend(
            qs,
            keys[:, : rows * bc].reshape(b * rows, bc, c),
            values[:, : rows * bc].reshape(b * rows, bc, c),
            k_scaled=True,
        )
        for r in (last - 1, last):  # keep the last two rows; padding slots are overwritten before use
            if r >= 0:
                i = r - first + 1
                ring_k[:, r % 2] = keys[:, i * bc : (i + 1) * bc]
                ring_v[:, r % 2] = values[:, i * bc : (i + 1) * bc]
        return a.reshape(b, rows * bc, c)[:, done : done + n]

    @staticmethod
    def _offset_causal(n_queries: int, n_keys: int, offset: int, device: torch.device) -> torch.Tensor:
        """(n_queries, n_keys) bool mask: query i may attend key j <= i + offset."""
        return torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).tril(offset)


class TokenAttention:
    """One layer's attention for one decoding step, bound to one cache (`FactoredAttention.token_attention`), with
    everything that does not change from step to step made once.

    `qkv` (B, 3 * n_state) (q only, (B, n_state), for cross-attention) is a buffer for the layer's input projection
    to write into (`torch.addmm(..., out=attend.qkv)`); calling the object reads it, writes the scaled key and the
    value into their slot, advances cache.length and returns the attention (B, n_state), a new tensor. Its q and
    k/v halves, the scaled query's buffer split into heads and, for the kinds whose cache is a few rows (row,
    previous row, prime), the slot views and the key/value views a query attends to are made once and reused, so
    a step is two multiplies and SDPA. The same arithmetic as the chunked path: the key stored times qk_scale, the
    query times qk_scale (an fp32 vector; for an fp32 query the same bits as the Python scalar, for half precision
    the product is rounded once, as for the keys) and SDPA with scale 1.
    """

    def __init__(self, attn: FactoredAttention, cache: KVCache):
        self.attn, self.cache = attn, cache
        self.batch, c = cache.key.shape[0], attn.n_state
        kind = attn.attn_func
        self.cross = kind == ENC_DEC
        self.qkv = cache.key.new_empty(self.batch, c if self.cross else 3 * c)
        if self.cross:
            return
        assert cache.kv is not None and cache.kv_scale is not None
        assert cache.key_heads is not None and cache.value_heads is not None
        self.slots = cache.key.shape[1]
        self.q, self.kv = self.qkv[:, :c], self.qkv[:, c:]
        self.q_scale = cache.kv_scale[:c]  # qk_scale, fp32
        self.q_heads_buffer = self.qkv.new_empty(self.batch, c)
        self.q_heads = self.q_heads_buffer.view(self.batch, attn.heads, 1, c // attn.heads)
        self.few_slots = kind in (BLOCK, PREV_BLOCK, PRIME)  # views of every slot and window are worth keeping
        self.slot_views = cache.kv.unbind(1) if self.few_slots else ()
        self.seen_views: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self) -> torch.Tensor:
        cache, attn, b = self.cache, self.attn, self.batch
        start = cache.length
        if start >= cache.capacity:
            attn._check_cache(cache, b, start, 1)  # raises with the message
        cache.length = start + 1
        if self.cross:
            return attn._attend(self.qkv.view(b, 1, -1), cache.key, cache.value, k_scaled=True).view(b, -1)
        slot, seen = attn.token_slots(start, self.slots)
        if slot is not None:  # key * qk_scale and value * 1 in one op, straight into the slot
            torch.mul(self.kv, cache.kv_scale, out=self.slot_views[slot] if self.few_slots else cache.kv[:, slot])
        if seen is None:  # row 0 of previous-row attention: all-zero keys and values give exactly zero
            return self.qkv.new_zeros(b, attn.n_state)
        torch.mul(self.q, self.q_scale, out=self.q_heads_buffer)
        views = self.seen_views.get(seen)
        if views is None:
            lo, hi = seen
            assert cache.key_heads is not None and cache.value_heads is not None
            views = cache.key_heads[:, :, lo:hi], cache.value_heads[:, :, lo:hi]
            if self.few_slots:
                self.seen_views[seen] = views
        a = F.scaled_dot_product_attention(self.q_heads, *views, scale=1.0)  # (B, H, 1, dh)
        return a.reshape(b, attn.n_state)


# Chunked (L > 1) step of each self-attention kind, looked up once per call.
_CHUNK_STEPS = {
    DENSE: FactoredAttention._dense_step,
    BLOCK: FactoredAttention._block_step,
    TRANSPOSE_BLOCK: FactoredAttention._transpose_block_step,
    PREV_BLOCK: FactoredAttention._prev_block_step,
    PRIME: FactoredAttention._prime_step,
}
