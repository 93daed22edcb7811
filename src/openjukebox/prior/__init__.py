"""Priors of Jukebox: the label conditioner and the upsampler conditioner (the prior itself comes next)."""

from openjukebox.prior.labels import LABEL_KEY_MAP, LabelConditioner, convert_label_state_dict, range_bins
from openjukebox.prior.upsampler import UpsamplerConditioner, convert_upsampler_conditioner_state_dict

__all__ = [
    "LABEL_KEY_MAP",
    "LabelConditioner",
    "UpsamplerConditioner",
    "convert_label_state_dict",
    "convert_upsampler_conditioner_state_dict",
    "range_bins",
]
