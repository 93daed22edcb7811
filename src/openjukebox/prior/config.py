"""Prior configuration and named presets (Jukebox paper §4 and Appendix B; original `hparams.py`).

A `PriorConfig` describes one level's prior completely: its transformer, label conditioning (artist, genre,
timing), lyrics conditioning and, below the top level, the conditioner on the codes of the level above. The
config alone rebuilds the model (it is saved as the checkpoint's config.json), so sampling and fine-tuning
never need hyper-parameters re-typed by hand.

Presets (`prior_preset(name, level)`):

| name                | level | width | depth | heads | n_ctx | attn_order | lyrics                      | labels |
|---------------------|-------|-------|-------|-------|-------|------------|-----------------------------|--------|
| `5b`                | 2     | 4800  | 72    | 8     | 8192  | 2          | none                        | v2     |
| `5b_lyrics`         | 2     | 4800  | 79    | 8     | 8192  | 10         | encoder (512 tokens)        | v2     |
| `1b_lyrics`         | 2     | 2048  | 72    | 2     | 6144  | 12         | merged (384 tokens)         | v3     |
| `upsampler_level_1` | 1     | 1920  | 72    | 1     | 8192  | 2          | none                        | v2     |
| `upsampler_level_0` | 0     | 1920  | 72    | 1     | 8192  | 2          | none                        | v2     |
| `small`             | 0-2   | 256   | 10    | 2     | 1024  | 8 / 2      | encoder (128 tokens), top   | ours   |
| `demo`              | 0-2   | 128   | 10/8  | 2     | 512   | 8 / 2      | encoder (128 tokens), top   | ours   |
| `tiny`              | 0-2   | 32    | 10    | 2     | 64    | 8 / 2      | encoder (16 tokens), top    | ours   |

The official presets exist for one level each; `small`, `demo` and `tiny` build a top prior at level 2 (lyrics
encoder with cross-attention every tenth layer, as the original's `small_sep_enc_dec_prior`) and an upsampler
at levels 1 and 0 (6 layers; `demo`'s have 8, as wide as its top prior: 128). Their code counts match the
VQ-VAE presets of the same names (512, 256 and 64 codes per level). `demo` is the bundled demo model
(MODEL_CARD.md), sized to train on two CPU cores in about 3 h 10 min.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from openjukebox import configs
from openjukebox.errors import OpenJukeboxError
from openjukebox.transformer import TransformerConfig

LYRICS_MODES = ("encoder", "merged")
LABEL_IDS = ("v2", "v3", "ours")


@dataclass(frozen=True)
class LabelConfig:
    """Artist/genre start embedding, and timing embeddings (top level only: `min_duration` set)."""

    artist_bins: int
    genre_bins: int
    max_bow_genre_size: int = 5  # genre word slots in y
    t_bins: int = 128  # bins of each timing embedding
    min_duration: float | None = None  # seconds; None = no timing signal (upsamplers)
    max_duration: float | None = None
    ids: str = "v2"  # where the ids come from: the official "v2"/"v3" lists, or "ours" (saved with the model)

    def __post_init__(self) -> None:
        if self.ids not in LABEL_IDS:
            raise ValueError(f"ids must be one of {LABEL_IDS}, not {self.ids!r}")
        if (self.min_duration is None) != (self.max_duration is None):
            raise ValueError("min_duration and max_duration must be both set (timing signal) or both None")
        if self.min_duration is not None and not 0 <= self.min_duration < self.max_duration:
            raise ValueError(f"need 0 <= min_duration < max_duration, got {self.min_duration}, {self.max_duration}")

    @property
    def timing(self) -> bool:
        return self.min_duration is not None


@dataclass(frozen=True)
class LyricsEncoderConfig:
    """The separate lyrics encoder of 5b_lyrics-style priors (the original's `prime_*` hyper-parameters)."""

    width: int = 1280
    depth: int = 18
    heads: int = 4
    attn_order: int = 2
    blocks: int | None = 32
    init_scale: float = 0.7
    m_attn: float = 0.25
    m_mlp: float = 1.0


@dataclass(frozen=True)
class LyricsConfig:
    """Lyrics conditioning.

    mode "encoder" (5b_lyrics): a causal lyrics encoder whose projected, layer-normed output is the key/value
    input of the cross-attention layers, with a lyric-prediction loss. mode "merged" (1b_lyrics): one sequence
    [lyric tokens | music codes] over a shared vocabulary (codes shifted by n_vocab) with prime attention.
    """

    mode: str
    n_tokens: int  # lyric window length
    n_vocab: int = 80  # lyric character tokens (80 for v2, 79 for v3), 0 = padding
    loss_fraction: float = 0.4  # weight of the lyric loss (the original's prime_loss_fraction)
    encoder: LyricsEncoderConfig | None = None  # mode "encoder" only
    alignment_layer: int | None = None  # layer and head whose attention gives word timings
    alignment_head: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in LYRICS_MODES:
            raise ValueError(f"lyrics mode must be one of {LYRICS_MODES}, not {self.mode!r}")
        if self.n_tokens < 2 or self.n_tokens % 2:
            raise ValueError(f"n_tokens must be even and >= 2, got {self.n_tokens}")
        if (self.mode == "encoder") != (self.encoder is not None):
            raise ValueError("lyrics mode 'encoder' needs an encoder config, mode 'merged' must not have one")


@dataclass(frozen=True)
class ConditionerConfig:
    """Upsampler conditioner on the codes of the level above (the original's `cond_*` hyper-parameters)."""

    width: int = 1024
    depth: int = 16
    m_conv: float = 1.0
    dilation_growth_rate: int = 3
    dilation_cycle: int | None = 8
    res_scale: bool = False


@dataclass(frozen=True)
class PriorConfig:
    level: int  # 0 = bottom (hop 8), 2 = top (hop 128)
    n_ctx: int  # music tokens per window
    width: int
    depth: int
    heads: int
    attn_order: int
    blocks: int | None
    init_scale: float = 1.0
    m_attn: float = 0.25
    m_mlp: float = 1.0
    merged_decoder: bool = False  # untied output projection, x_cond not re-added (5b models)
    bins: int = 2048  # codes per level (the VQ-VAE's l_bins)
    levels: int = 3
    downs_t: tuple[int, ...] = (3, 2, 2)  # the VQ-VAE's, for hop lengths and the conditioner's upsampling
    strides_t: tuple[int, ...] = (2, 2, 2)
    sample_rate: int = 44100
    labels: LabelConfig | None = None
    lyrics: LyricsConfig | None = None
    conditioner: ConditionerConfig | None = None  # required below the top level

    def __post_init__(self) -> None:
        if self.n_ctx < 1 or self.bins < 1:
            raise ValueError(f"n_ctx and bins must be >= 1, got {self.n_ctx}, {self.bins}")
        if not 0 <= self.level < self.levels:
            raise ValueError(f"level must be in [0, {self.levels}), got {self.level}")
        if len(self.downs_t) != self.levels or len(self.strides_t) != self.levels:
            raise ValueError(f"downs_t and strides_t need {self.levels} entries")
        if self.is_top == (self.conditioner is not None):
            raise ValueError("a conditioner on the level above is required below the top level, and only there")
        if self.lyrics is not None and not self.is_top:
            raise ValueError("lyrics conditioning exists only on the top level")
        if self.labels is not None and self.labels.timing != self.is_top:
            raise ValueError("timing embeddings (min/max_duration) belong to the top level only")
        if self.lyrics is not None and self.lyrics.mode == "merged" and self.labels is None:
            raise ValueError("a merged lyrics prior needs labels (its first position is the label embedding)")
        self.transformer  # validates shapes  # noqa: B018

    @property
    def is_top(self) -> bool:
        return self.level == self.levels - 1

    @property
    def hop_length(self) -> int:
        """Audio samples per token at this level."""
        return math.prod(s**d for s, d in zip(self.strides_t[: self.level + 1], self.downs_t[: self.level + 1]))

    @property
    def sample_length(self) -> int:
        """Audio samples one window of n_ctx tokens covers."""
        return self.n_ctx * self.hop_length

    @property
    def cond_downsample(self) -> int | None:
        """Tokens of this level per token of the level above (None at the top)."""
        if self.is_top:
            return None
        return self.strides_t[self.level + 1] ** self.downs_t[self.level + 1]

    @property
    def n_tokens(self) -> int:
        return 0 if self.lyrics is None else self.lyrics.n_tokens

    @property
    def merged(self) -> bool:
        return self.lyrics is not None and self.lyrics.mode == "merged"

    @property
    def y_length(self) -> int:
        """Columns of the label vector y: [total, offset, length, artist, genres..., lyric tokens...]."""
        if self.labels is None:
            return 0
        return 4 + self.labels.max_bow_genre_size + self.n_tokens

    @property
    def transformer(self) -> TransformerConfig:
        """The main stack: over [lyrics | music] when merged, with cross-attention to the lyrics encoder otherwise."""
        lyrics = self.lyrics
        return TransformerConfig(
            width=self.width,
            depth=self.depth,
            heads=self.heads,
            n_ctx=self.n_ctx + (lyrics.n_tokens if self.merged else 0),
            attn_order=self.attn_order,
            blocks=self.blocks,
            m_attn=self.m_attn,
            m_mlp=self.m_mlp,
            init_scale=self.init_scale,
            encoder_dims=lyrics.n_tokens if lyrics is not None and lyrics.mode == "encoder" else None,
            prime_len=lyrics.n_tokens if self.merged else None,
        )

    @property
    def lyrics_encoder_transformer(self) -> TransformerConfig | None:
        if self.lyrics is None or self.lyrics.encoder is None:
            return None
        e = self.lyrics.encoder
        return TransformerConfig(
            width=e.width,
            depth=e.depth,
            heads=e.heads,
            n_ctx=self.lyrics.n_tokens,
            attn_order=e.attn_order,
            blocks=e.blocks,
            m_attn=e.m_attn,
            m_mlp=e.m_mlp,
            init_scale=e.init_scale,
        )

    @property
    def alignment(self) -> tuple[int, int] | None:
        """(layer, head) of the attention that aligns music to lyrics, if the preset knows one."""
        if self.lyrics is None or self.lyrics.alignment_layer is None:
            return None
        return self.lyrics.alignment_layer, self.lyrics.alignment_head or 0

    def to_dict(self) -> dict[str, Any]:
        return configs.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriorConfig:
        return configs.from_dict(cls, data)


_V2 = dict(artist_bins=4111, genre_bins=120, max_bow_genre_size=5, t_bins=128)
_V3 = dict(artist_bins=7898, genre_bins=604, max_bow_genre_size=1, t_bins=64)
_OFFICIAL_UPSAMPLER = dict(
    n_ctx=8192, width=1920, depth=72, heads=1, attn_order=2, blocks=128, init_scale=0.4, merged_decoder=False
)

OFFICIAL_PRESETS: dict[str, PriorConfig] = {
    "5b": PriorConfig(
        level=2,
        n_ctx=8192,
        width=4800,
        depth=72,
        heads=8,
        attn_order=2,
        blocks=128,
        init_scale=0.1,
        merged_decoder=True,
        labels=LabelConfig(**_V2, min_duration=60.0, max_duration=600.0, ids="v2"),
    ),
    "5b_lyrics": PriorConfig(
        level=2,
        n_ctx=8192,
        width=4800,
        depth=79,
        heads=8,
        attn_order=10,
        blocks=128,
        init_scale=0.1,
        merged_decoder=True,
        labels=LabelConfig(**_V2, min_duration=23.8, max_duration=600.0, ids="v2"),
        lyrics=LyricsConfig(
            mode="encoder",
            n_tokens=512,
            n_vocab=80,
            loss_fraction=0.4,
            encoder=LyricsEncoderConfig(),
            alignment_layer=68,
            alignment_head=2,
        ),
    ),
    "1b_lyrics": PriorConfig(
        level=2,
        n_ctx=6144,
        width=2048,
        depth=72,
        heads=2,
        attn_order=12,
        blocks=64,
        init_scale=0.2,
        merged_decoder=False,
        labels=LabelConfig(**_V3, min_duration=17.84, max_duration=600.0, ids="v3"),
        lyrics=LyricsConfig(
            mode="merged", n_tokens=384, n_vocab=79, loss_fraction=0.4, alignment_layer=63, alignment_head=0
        ),
    ),
    "upsampler_level_1": PriorConfig(
        level=1,
        **_OFFICIAL_UPSAMPLER,
        labels=LabelConfig(**_V2, ids="v2"),
        conditioner=ConditionerConfig(res_scale=True),
    ),
    "upsampler_level_0": PriorConfig(
        level=0,
        **_OFFICIAL_UPSAMPLER,
        labels=LabelConfig(**_V2, ids="v2"),
        conditioner=ConditionerConfig(res_scale=False),
    ),
}


def _own_preset(
    level: int,
    *,
    bins: int,
    n_ctx: int,
    width: int,
    heads: int,
    blocks: int,
    n_tokens: int,
    encoder: LyricsEncoderConfig | None,
    upsampler_depth: int = 6,
) -> PriorConfig:
    """Our own top prior (level 2) or upsampler (levels 0, 1): labels from our vocabularies."""
    common = dict(level=level, bins=bins, n_ctx=n_ctx, width=width, heads=heads, blocks=blocks, init_scale=0.7)
    if level == 2:
        window = n_ctx * 128 / 44100
        return PriorConfig(
            **common,
            depth=10,
            attn_order=8,  # [row, column, previous row] x 3, then cross-attention to the lyrics
            merged_decoder=True,
            labels=LabelConfig(
                artist_bins=64,
                genre_bins=64,
                max_bow_genre_size=1,
                t_bins=64,
                min_duration=math.floor(window * 100) / 100,  # a song of exactly one window is long enough
                max_duration=600.0,
                ids="ours",
            ),
            lyrics=LyricsConfig(
                mode="encoder", n_tokens=n_tokens, n_vocab=80, encoder=encoder, alignment_layer=9, alignment_head=0
            ),
        )
    return PriorConfig(
        **common,
        depth=upsampler_depth,
        attn_order=2,
        labels=LabelConfig(artist_bins=64, genre_bins=64, max_bow_genre_size=1, ids="ours"),
        conditioner=ConditionerConfig(width=max(width // 2, 16), depth=4, dilation_cycle=4),
    )


def prior_preset(name: str, level: int | None = None) -> PriorConfig:
    """The named preset at `level` (official presets have one level; None takes it, or 2 for small/tiny)."""
    if name in OFFICIAL_PRESETS:
        config = OFFICIAL_PRESETS[name]
        if level is not None and level != config.level:
            raise OpenJukeboxError(f"prior preset {name!r} is a level-{config.level} model, not level {level}")
        return config
    level = 2 if level is None else level
    if level not in (0, 1, 2):
        raise OpenJukeboxError(f"level must be 0, 1 or 2, not {level}")
    if name == "small":
        encoder = LyricsEncoderConfig(width=128, depth=3, heads=2, attn_order=2, blocks=8, init_scale=0.7)
        return _own_preset(level, bins=512, n_ctx=1024, width=256, heads=2, blocks=16, n_tokens=128, encoder=encoder)
    if name == "demo":
        if level == 2:
            encoder = LyricsEncoderConfig(width=64, depth=2, heads=2, attn_order=2, blocks=8, init_scale=0.7)
            return _own_preset(level, bins=256, n_ctx=512, width=128, heads=2, blocks=16, n_tokens=128, encoder=encoder)
        return _own_preset(
            level, bins=256, n_ctx=512, width=128, heads=2, blocks=16, n_tokens=0, encoder=None, upsampler_depth=8
        )
    if name == "tiny":
        encoder = LyricsEncoderConfig(width=32, depth=2, heads=2, attn_order=2, blocks=4, init_scale=0.7)
        return _own_preset(level, bins=64, n_ctx=64, width=32, heads=2, blocks=4, n_tokens=16, encoder=encoder)
    raise OpenJukeboxError(f"unknown prior preset {name!r}; known: {', '.join(PRESET_NAMES)}")


PRESET_NAMES = (*OFFICIAL_PRESETS, "small", "demo", "tiny")


def with_label_bins(config: PriorConfig, artist_bins: int, genre_bins: int) -> PriorConfig:
    """`config` with label tables of the given sizes (for our own vocabularies or fine-tuning growth)."""
    if config.labels is None:
        raise OpenJukeboxError("this prior has no label conditioning")
    return replace(config, labels=replace(config.labels, artist_bins=artist_bins, genre_bins=genre_bins))
