"""Priors of Jukebox: one level's prior (`Prior`, with its config and presets), its parts and the original key map."""

from openjukebox.prior.autoregressive import AutoregressivePrior, bits_per_token, convert_autoregressive_state_dict
from openjukebox.prior.config import (
    PRESET_NAMES,
    ConditionerConfig,
    LabelConfig,
    LyricsConfig,
    LyricsEncoderConfig,
    PriorConfig,
    prior_preset,
)
from openjukebox.prior.keys import convert_prior_state_dict, rename_prior_key
from openjukebox.prior.labeller import Labeller, Labels, SongLyrics, SongMeta
from openjukebox.prior.labels import LABEL_KEY_MAP, LabelConditioner, convert_label_state_dict, range_bins
from openjukebox.prior.model import Prior, PriorOutput
from openjukebox.prior.upsampler import UpsamplerConditioner, convert_upsampler_conditioner_state_dict

__all__ = [
    "LABEL_KEY_MAP",
    "PRESET_NAMES",
    "AutoregressivePrior",
    "ConditionerConfig",
    "LabelConditioner",
    "LabelConfig",
    "Labeller",
    "Labels",
    "LyricsConfig",
    "LyricsEncoderConfig",
    "Prior",
    "PriorConfig",
    "PriorOutput",
    "SongLyrics",
    "SongMeta",
    "UpsamplerConditioner",
    "bits_per_token",
    "convert_autoregressive_state_dict",
    "convert_label_state_dict",
    "convert_prior_state_dict",
    "convert_upsampler_conditioner_state_dict",
    "prior_preset",
    "range_bins",
    "rename_prior_key",
]
