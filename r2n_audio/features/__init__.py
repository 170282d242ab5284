"""Front-end features: batched Kaldi fbank, mean normalisation, augmentation.

``Fbank`` and ``CMN`` live in :mod:`r2n_audio.features.fbank`, ``Frontend`` and
``build_frontend`` in :mod:`r2n_audio.features.frontend`, the augmentation modules in
:mod:`r2n_audio.features.augment`.
"""

from r2n_audio.features.fbank import CMN, Fbank
from r2n_audio.features.frontend import Frontend, build_frontend

__all__ = ["Fbank", "CMN", "Frontend", "build_frontend"]
