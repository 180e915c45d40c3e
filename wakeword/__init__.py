"""wakeword: make a wake-word detector from a few recordings by transfer learning, and run it live."""

from wakeword.audio import SAMPLE_RATE, AudioError, load_audio
from wakeword.data.clips import Clip, DataSet, ManifestError

__version__ = "0.1.0"
__all__ = ["SAMPLE_RATE", "AudioError", "Clip", "DataSet", "ManifestError", "load_audio", "load_detector"]


def load_detector(path):
    """Rebuild a saved detector from its model directory (config.json + model.safetensors)."""
    from wakeword.checkpoint import load_detector as _load

    return _load(path)
