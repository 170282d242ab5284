"""r2n-audio: speaker verification with Res2Net backbones.

The core (audio, features, models, scoring, inference) imports no Lightning; training lives in
:mod:`r2n_audio.training` and needs the ``train`` extra.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
