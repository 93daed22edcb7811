"""Music-over-lyrics attention of one teacher-forced window (Jukebox paper §5.3 "Lyrics alignment"; the original
`jukebox/align.py`, which asks `z_forward(..., get_attn_weights={layer})` for one layer's softmax weights).

Our attention layers never materialise their weights (they run through fused scaled-dot-product attention), so
we record what the chosen layer actually receives and recompute its weights from that:

1. a forward hook on `prior.prior.transformer.layers[L].attn` captures the layer's inputs: the normed hidden
   states x (B, T, width) and, for cross-attention, encoder_kv (B, n_tokens, width); the forward stops right
   after the last recorded layer (the layers above cannot change the weights below them);
2. `attention_weights` recomputes softmax(q k^T) for every head with the module's own projections (`in_proj`,
   `enc_kv`) and the same scaling (q and k each times d_head^-1/4), in fp32;
3. `attention_output` turns those weights back into the layer output (weights @ v, then `proj`); tests check it
   equals the output the hook saw, so the weights are the ones the model used.

Kinds with lyric keys:
- 6, encoder-decoder ("encoder" lyrics mode, 5b_lyrics): keys are the lyrics encoder's output, one per lyric
  token; the weights are (n_ctx, n_tokens) as they are.
- 7, prime ("merged" mode, 1b_lyrics): one sequence [lyrics | music]; keys are its first
  `prime_keys_len(n_tokens, blocks)` positions under a causal mask. The music queries over the lyric keys are the
  slice [n_tokens:, :n_tokens] (as the original); the rest of each row's mass went to the first music positions.

Key j of a lyric window has read lyric tokens 0 .. j-1 (inputs are shifted by one position), so it stands for the
window's character j - 1; `aligner.py` applies that shift when it places windows in the song.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import torch

from openjukebox.errors import OpenJukeboxError
from openjukebox.transformer.attention import ENC_DEC, PRIME, FactoredAttention

LYRIC_KINDS = (ENC_DEC, PRIME)


@dataclass
class LayerCall:
    """What one attention layer received and returned in a teacher-forced forward.

    x: (B, T, width) its (normed) input; encoder_kv: (B, S, width) or None; output: (B, T, width).
    """

    x: torch.Tensor
    encoder_kv: torch.Tensor | None
    output: torch.Tensor


class _Recorded(Exception):
    """Raised by the last hook to stop the forward once every requested layer has been seen."""


def lyric_layers(prior) -> list[int]:
    """Layers of the prior's main transformer whose keys are lyrics: cross-attention (6) and prime (7)."""
    return [i for i, layer in enumerate(prior.prior.transformer.layers) if layer.attn_func in LYRIC_KINDS]


def check_lyric_layer(prior, layer: int, head: int | None = None) -> FactoredAttention:
    """The attention module of `layer`, which must attend to lyrics; `head` must exist."""
    layers = prior.prior.transformer.layers
    if not 0 <= layer < len(layers):
        raise OpenJukeboxError(f"alignment layer {layer} does not exist (the prior has {len(layers)} layers)")
    attn = layers[layer].attn
    if attn.attn_func not in LYRIC_KINDS:
        raise OpenJukeboxError(
            f"layer {layer} is attention kind {attn.attn_func}, not a lyrics layer; "
            f"lyric layers of this prior: {lyric_layers(prior)}"
        )
    if head is not None and not 0 <= head < attn.heads:
        raise OpenJukeboxError(f"alignment head {head} does not exist (layer {layer} has {attn.heads} heads)")
    return attn


@contextmanager
def record_layers(prior, layers: Iterable[int], stop: bool = True, detach: bool = True):
    """Record the inputs and output of the given attention layers during the next teacher-forced forward
    (detached from the graph, unless `detach` is False: training through the recomputed weights).

    Yields a dict layer -> LayerCall, filled by the forward run inside the block. With `stop`, the forward is cut
    short after the deepest requested layer (run it through `run_recorded`).
    """
    wanted = sorted(set(layers))
    calls: dict[int, LayerCall] = {}
    handles = []

    def make_hook(index: int):
        def hook(module, args, kwargs, output):
            x = args[0] if args else kwargs["x"]
            enc = args[1] if len(args) > 1 else kwargs.get("encoder_kv")
            if detach:
                x, enc, output = x.detach(), None if enc is None else enc.detach(), output.detach()
            calls[index] = LayerCall(x, enc, output)
            if stop and index == wanted[-1]:
                raise _Recorded

        return hook

    for index in wanted:
        attn = prior.prior.transformer.layers[index].attn
        handles.append(attn.register_forward_hook(make_hook(index), with_kwargs=True))
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def run_recorded(prior, codes: torch.Tensor, y: torch.Tensor | None, upper: torch.Tensor | None) -> None:
    """The prior's teacher-forced forward, stopped early by `record_layers` (no gradients)."""
    with torch.no_grad(), suppress(_Recorded):
        prior(codes, upper, y)


def attention_weights(attn: FactoredAttention, call: LayerCall) -> torch.Tensor:
    """Softmax weights of every head of a lyrics layer, recomputed in fp32 from what it received.

    Returns (B, heads, T, S): kind 6, S = encoder positions; kind 7, S = the key prefix (`attn.prime_keys`),
    causally masked (query i sees keys j <= i).
    """
    x = call.x
    b, t, _ = x.shape
    n_state, heads = attn.n_state, attn.heads
    d_head = n_state // heads
    if attn.attn_func == ENC_DEC:
        assert call.encoder_kv is not None, "cross-attention was called without encoder_kv"
        q = attn.in_proj(x)  # (B, T, n_state)
        k, _ = attn.enc_kv(call.encoder_kv.type_as(x)).chunk(2, dim=-1)  # (B, S, n_state)
        mask = None
    elif attn.attn_func == PRIME:
        q, k, _ = attn.in_proj(x).chunk(3, dim=-1)
        k = k[:, : attn.prime_keys]  # (B, P, n_state)
        mask = torch.ones(t, k.shape[1], dtype=torch.bool, device=x.device).tril()
    else:
        raise OpenJukeboxError(f"attention kind {attn.attn_func} has no lyric keys")
    scale = attn.qk_scale
    q = (q.float() * scale).view(b, t, heads, d_head).transpose(1, 2)  # (B, H, T, dh)
    k = (k.float() * scale).view(b, k.shape[1], heads, d_head).transpose(1, 2)  # (B, H, S, dh)
    scores = q @ k.transpose(-1, -2)  # (B, H, T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1)


def attention_output(attn: FactoredAttention, call: LayerCall, weights: torch.Tensor) -> torch.Tensor:
    """The layer output (B, T, width) those weights give: the check that they are the weights the model used."""
    x = call.x
    b, t, _ = x.shape
    heads, d_head = attn.heads, attn.n_state // attn.heads
    if attn.attn_func == ENC_DEC:
        assert call.encoder_kv is not None
        _, v = attn.enc_kv(call.encoder_kv.type_as(x)).chunk(2, dim=-1)
    else:
        v = attn.in_proj(x).chunk(3, dim=-1)[2][:, : attn.prime_keys]
    v = v.float().view(b, v.shape[1], heads, d_head).transpose(1, 2)  # (B, H, S, dh)
    a = (weights @ v).transpose(1, 2).reshape(b, t, attn.n_state)  # (B, T, n_state)
    return attn.proj(a.type_as(x))


def music_over_lyrics(prior, weights: torch.Tensor) -> torch.Tensor:
    """(B, H, T, S) weights of a lyrics layer -> (B, H, n_ctx, n_tokens): music queries over lyric keys."""
    c = prior.config
    if c.merged:
        return weights[:, :, c.n_tokens :, : c.n_tokens]  # the original's [n_tokens:, :n_tokens]
    return weights


def sung_key_bits(prior, call: LayerCall, layer: int, head: int, keys: torch.Tensor) -> torch.Tensor:
    """The alignment loss of `prior train --align-loss`: bits per supervised code, -log2 of the weight that one
    head of a lyrics layer (its `call` recorded without detaching) gives the key of the character sung then.

    keys: (B, n_ctx) int64 (`CodeCrops(sung_keys=True)`), -1 for codes without a target. Returns a scalar; 0 when
    no code has a target (a batch of instrumental windows).
    """
    attn = check_lyric_layer(prior, layer, head)
    weights = music_over_lyrics(prior, attention_weights(attn, call))[:, head]  # (B, n_ctx, n_tokens)
    has = keys >= 0
    p = weights.gather(-1, keys.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(torch.log2(p.clamp_min(1e-12)) * has).sum() / has.sum().clamp(min=1)


def window_attentions(
    prior,
    codes: torch.Tensor,
    y: torch.Tensor,
    upper: torch.Tensor | None = None,
    layers: Iterable[int] | None = None,
) -> dict[int, torch.Tensor]:
    """Music-over-lyrics attention of all heads of several lyric layers in one teacher-forced forward.

    Args:
        codes: (B, n_ctx) one window of this level's codes; y: (B, y_length) its label vector (lyric window
            included); upper: codes of the level above (never for a lyrics prior, which is a top prior).
        layers: lyric layers to record (default all of them).
    Returns:
        layer -> (B, heads, n_ctx, n_tokens) float32 on the prior's device.
    """
    if prior.config.lyrics is None:
        raise OpenJukeboxError("this prior has no lyrics conditioning: there is no lyrics attention to align with")
    layers = lyric_layers(prior) if layers is None else list(layers)
    attns = {layer: check_lyric_layer(prior, layer) for layer in layers}
    with record_layers(prior, layers) as calls:
        run_recorded(prior, codes, y, upper)
    out = {}
    with torch.no_grad():
        for layer, attn in attns.items():
            out[layer] = music_over_lyrics(prior, attention_weights(attn, calls[layer]))
    return out


def window_attention(
    prior,
    codes: torch.Tensor,
    y: torch.Tensor,
    upper: torch.Tensor | None = None,
    *,
    layer: int,
    head: int,
) -> torch.Tensor:
    """Music-over-lyrics attention of one head of one window: (B, n_ctx, n_tokens) float32, rows sum to at most 1
    (exactly 1 for cross-attention; for prime attention the mass on music keys is left out)."""
    check_lyric_layer(prior, layer, head)
    return window_attentions(prior, codes, y, upper, [layer])[layer][:, head]
