"""One level's prior: conditioners, lyrics and the autoregressive transformer (the original `SimplePrior`).

Inputs of the teacher-forced forward:
- `codes` (B, n_ctx): this level's codes of one window;
- `upper` (B, n_ctx // cond_downsample): the codes of the level above over the same window (upsamplers only);
- `y` (B, y_length): the label vector [total_length, offset, sample_length, artist, genres..., lyric tokens...]
  (offset and lengths in audio samples), for priors with labels.

Conditioning: the label conditioner's start embedding fills position 0; the top level's timing signal (or, below
the top, the upsampler conditioner's output) is `x_cond`. Lyrics enter in one of two ways:
- "encoder" (5b_lyrics): the lyric tokens run through a causal lyrics encoder (`lyrics_encoder`, no labels,
  learned start token); its output, projected to the prior's width and layer-normed (`lyrics_proj`,
  `lyrics_norm`), is the key/value input of the cross-attention layers. `lyrics_out` predicts the lyric tokens
  from it (the lyric loss).
- "merged" (1b_lyrics): one sequence [lyric tokens | codes + n_vocab] over n_vocab + bins tokens, `x_cond` zero on
  the lyric positions; the lyric loss is the cross-entropy over the lyric positions.

Loss (bits per token): lyric_loss_fraction * lyric_loss * n_tokens / (n_tokens + n_ctx)
                       + music_loss * n_ctx / (n_tokens + n_ctx)   (the original's z_forward).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from openjukebox.prior.autoregressive import AutoregressivePrior, bits_per_token
from openjukebox.prior.config import PriorConfig
from openjukebox.prior.labels import LabelConditioner
from openjukebox.prior.upsampler import UpsamplerConditioner
from openjukebox.transformer.attention import _linear
from openjukebox.transformer.block import LayerNorm


@dataclass
class PriorOutput:
    """loss: the training objective; music_loss / lyric_loss: bits per token of each part (lyric_loss is 0
    without lyrics); logits: (B, n_ctx, bins) over this level's codes."""

    loss: torch.Tensor
    music_loss: torch.Tensor
    lyric_loss: torch.Tensor
    logits: torch.Tensor


class Prior(nn.Module):
    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        width = c.width
        if c.conditioner is not None:
            cc = c.conditioner
            self.conditioner = UpsamplerConditioner(
                c.bins,
                width,
                c.downs_t[c.level + 1],
                c.strides_t[c.level + 1],
                cc.width,
                cc.depth,
                cond_m_conv=cc.m_conv,
                cond_dilation_growth_rate=cc.dilation_growth_rate,
                cond_dilation_cycle=cc.dilation_cycle,
                cond_res_scale=cc.res_scale,
                init_scale=c.init_scale,
            )
        if c.labels is not None:
            lc = c.labels
            self.labels = LabelConditioner(
                (lc.genre_bins, lc.artist_bins),
                width,
                lc.max_bow_genre_size,
                lc.t_bins,
                c.sample_rate,
                lc.min_duration or 0.0,
                lc.max_duration or 0.0,
                n_time=c.n_ctx,
                include_time_signal=lc.timing,
                init_scale=c.init_scale,
            )
        lyrics = c.lyrics
        self.n_vocab = 0 if lyrics is None else lyrics.n_vocab
        if lyrics is not None and lyrics.mode == "encoder":
            enc = c.lyrics_encoder_transformer
            assert enc is not None
            self.lyrics_encoder = AutoregressivePrior(enc, lyrics.n_vocab, only_encode=True)
            self.lyrics_proj = _linear(enc.width, width, enc.init_scale)
            self.lyrics_norm = LayerNorm(width)
            self.lyrics_out = nn.Linear(width, lyrics.n_vocab, bias=False)
            nn.init.normal_(self.lyrics_out.weight, std=0.02 * c.init_scale)
        input_bins = c.bins + (self.n_vocab if c.merged else 0)
        self.prior = AutoregressivePrior(
            c.transformer, input_bins, merged_decoder=c.merged_decoder, y_cond=c.labels is not None
        )

    # -- conditioning -------------------------------------------------------------------------------------------

    def split_y(self, y: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(labels (B, 4 + genres), lyric tokens (B, n_tokens) or None) of the label vector."""
        c = self.config
        if c.labels is None:
            if y is not None:
                raise ValueError("this prior has no label conditioning; y must be None")
            return None, None
        if y is None or y.dim() != 2 or y.shape[1] != c.y_length:
            got = None if y is None else tuple(y.shape)
            raise ValueError(f"y of shape (B, {c.y_length}) is required, got {got}")
        n_labels = c.y_length - c.n_tokens
        return y[:, :n_labels].long(), (y[:, n_labels:].long() if c.n_tokens else None)

    def conditioning(
        self, y: torch.Tensor | None, upper: torch.Tensor | None, batch: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """(x_cond (B, n_ctx, width) or None, y_cond (B, 1, width) or None, lyric tokens (B, n_tokens) or None)."""
        c = self.config
        labels, lyrics = self.split_y(y)
        y_cond, x_cond = (None, None) if labels is None else self.labels(labels)
        if c.conditioner is not None:
            if upper is None or upper.shape != (batch, c.n_ctx // c.cond_downsample):
                got = None if upper is None else tuple(upper.shape)
                raise ValueError(
                    f"codes of the level above of shape {(batch, c.n_ctx // c.cond_downsample)} needed, got {got}"
                )
            x_cond = self.conditioner(upper)
        elif upper is not None:
            raise ValueError("the top-level prior takes no codes from a level above")
        return x_cond, y_cond, lyrics

    def encoder_kv(self, lyrics: torch.Tensor) -> torch.Tensor:
        """Cross-attention keys/values (B, n_tokens, width) from lyric tokens (B, n_tokens) ("encoder" mode)."""
        acts = self.lyrics_encoder(lyrics)
        return self.lyrics_norm(self.lyrics_proj(acts))

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        c = self.config
        if codes.dim() != 2 or codes.shape[1] > c.n_ctx:
            raise ValueError(f"codes must have shape (B, <= {c.n_ctx}), got {tuple(codes.shape)}")
        return codes.long()

    # -- forward ------------------------------------------------------------------------------------------------

    def forward(
        self, codes: torch.Tensor, upper: torch.Tensor | None = None, y: torch.Tensor | None = None
    ) -> PriorOutput:
        c = self.config
        codes = self._check_codes(codes)
        if codes.shape[1] != c.n_ctx:
            raise ValueError(f"training needs whole windows of {c.n_ctx} codes, got {codes.shape[1]}")
        b = codes.shape[0]
        x_cond, y_cond, lyrics = self.conditioning(y, upper, b)
        zero = codes.new_zeros((), dtype=torch.float32)
        if c.merged:
            assert lyrics is not None
            tokens = torch.cat([lyrics, codes + self.n_vocab], dim=1)  # (B, n_tokens + n_ctx)
            if x_cond is not None:
                x_cond = torch.cat([x_cond.new_zeros(b, c.n_tokens, c.width), x_cond], dim=1)
            logits = self.prior(tokens, x_cond, y_cond)  # (B, n_tokens + n_ctx, n_vocab + bins)
            lyric_loss = bits_per_token(logits[:, : c.n_tokens], lyrics)
            music_loss = bits_per_token(logits[:, c.n_tokens :], codes + self.n_vocab)
            music_logits = logits[:, c.n_tokens :, self.n_vocab :]
        else:
            encoder_kv = None
            lyric_loss = zero
            if lyrics is not None:
                encoder_kv = self.encoder_kv(lyrics)
                lyric_loss = bits_per_token(self.lyrics_out(encoder_kv.float()), lyrics)
            music_logits = self.prior(codes, x_cond, y_cond, encoder_kv)
            music_loss = bits_per_token(music_logits, codes)
        total = c.n_tokens + c.n_ctx
        fraction = 0.0 if c.lyrics is None else c.lyrics.loss_fraction
        loss = fraction * lyric_loss * (c.n_tokens / total) + music_loss * (c.n_ctx / total)
        return PriorOutput(loss, music_loss, lyric_loss, music_logits)

    def sample(
        self,
        n_samples: int,
        upper: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        prompt: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Sample one window of codes (B, length); see `openjukebox.prior.sampling.sample_prior` for the options."""
        from openjukebox.prior.sampling import sample_prior  # sampling imports this module's types

        return sample_prior(self, n_samples, upper=upper, y=y, prompt=prompt, **kwargs)

    # -- fine-tuning --------------------------------------------------------------------------------------------

    @torch.no_grad()
    def grow_labels(self, artist_bins: int, genre_bins: int, generator: torch.Generator | None = None) -> None:
        """Enlarge the artist and genre tables to the given sizes for new artists/genres; existing rows are kept
        bit for bit and new rows get the original init, N(0, 0.01 * init_scale). Updates `config`."""
        c = self.config
        if c.labels is None:
            raise ValueError("this prior has no label conditioning")
        if artist_bins < c.labels.artist_bins or genre_bins < c.labels.genre_bins:
            raise ValueError(
                f"label tables can only grow: have {c.labels.artist_bins} artists, {c.labels.genre_bins} genres; "
                f"asked for {artist_bins}, {genre_bins}"
            )
        std = 0.01 * c.init_scale
        for name, bins in (("artist_embedding", artist_bins), ("genre_embedding", genre_bins)):
            old: nn.Embedding = getattr(self.labels, name)
            new = nn.Embedding(bins, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype)
            new.weight.normal_(0.0, std, generator=generator)
            new.weight[: old.num_embeddings] = old.weight
            new.weight.requires_grad_(old.weight.requires_grad)
            setattr(self.labels, name, new)
        self.labels.artist_bins, self.labels.genre_bins = artist_bins, genre_bins
        self.config = replace(c, labels=replace(c.labels, artist_bins=artist_bins, genre_bins=genre_bins))
