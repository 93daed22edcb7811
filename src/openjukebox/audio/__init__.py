"""Audio: file I/O and resampling (`io`), STFT magnitudes (`stft`)."""

from openjukebox.audio.io import (
    SUPPORTED_EXTENSIONS,
    AudioInfo,
    audio_info,
    load_audio,
    read_segment,
    save_audio,
)

__all__ = ["SUPPORTED_EXTENSIONS", "AudioInfo", "audio_info", "load_audio", "read_segment", "save_audio"]
