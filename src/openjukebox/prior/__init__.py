"""Priors of Jukebox: the autoregressive prior (teacher-forced) and its label and upsampler conditioners."""

from openjukebox.prior.autoregressive import AutoregressivePrior, convert_autoregressive_state_dict
from openjukebox.prior.labels import LABEL_KEY_MAP, LabelConditioner, convert_label_state_dict, range_bins
from openjukebox.prior.upsampler import UpsamplerConditioner, convert_upsampler_conditioner_state_dict

__all__ = [
    "LABEL_KEY_MAP",
    "AutoregressivePrior",
    "LabelConditioner",
    "UpsamplerConditioner",
    "convert_autoregressive_state_dict",
    "convert_label_state_dict",
    "convert_upsampler_conditioner_state_dict",
    "range_bins",
]
