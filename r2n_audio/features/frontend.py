"""The speaker-verification front-end: :class:`Fbank` + optional :class:`CMN`, from a JSON config.

Every front-end module in r2n-audio has the same interface: ``forward(waveforms (B, N) float in
[-1, 1], lengths (B,) samples | None) -> (feats (B, T, F), frame_lengths (B,))`` and
``config() -> dict`` of JSON types with a ``"type"`` key; :func:`build_frontend` turns such a
dict (as stored in a model bundle) back into the module.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch
from torch import Tensor, nn

from r2n_audio.errors import R2NError
from r2n_audio.features.fbank import CMN, Fbank
from r2n_audio.features.silence import SILENCE_RMS, drop_frames

__all__ = ["Frontend", "build_frontend", "inference_frontend_config", "FRONTEND_TYPES"]

# "type" -> (module, class); imported on demand so optional front-ends cost nothing.
FRONTEND_TYPES = {
    "kaldi": ("r2n_audio.features.frontend", "Frontend"),
    "speechbrain": ("r2n_audio.features.speechbrain_fbank", "SpeechBrainFrontend"),
}

# The speaker-verification defaults (WeSpeaker's VoxCeleb recipes): 80 bins, 25/10 ms, hamming,
# int16 sample scale, no energy floor, per-utterance mean normalisation.
_DEFAULTS: dict[str, Any] = dict(
    num_mel_bins=80, frame_length=25.0, frame_shift=10.0, dither=0.0, window_type="hamming",
    energy_floor=0.0, sample_frequency=16000.0, waveform_scale=32768.0)


class Frontend(nn.Module):
    """Kaldi fbank followed by per-utterance mean (and optionally variance) normalisation.

    Parameters
    ----------
    cmn : bool
        Subtract each utterance's mean over its valid frames (default True).
    cmn_var : bool
        Also divide by each utterance's standard deviation (default False).
    silence_rms : float
        In evaluation mode, frames whose RMS after mean removal is below this ([-1, 1] units;
        default :data:`~r2n_audio.features.silence.SILENCE_RMS`, about -84 dBFS) are dropped
        before mean normalisation: digital silence (zeros, DC, +-1-step dither) says nothing
        about a speaker, and left in it outweighs the speech (see
        :mod:`r2n_audio.features.silence`). ``frame_lengths`` then counts the kept frames
        (possibly 0). ``0`` keeps every frame. Training mode keeps every frame.
    **fbank_options
        Any :class:`~r2n_audio.features.fbank.Fbank` option; unspecified ones take the
        speaker-verification defaults: ``num_mel_bins=80, frame_length=25, frame_shift=10,
        window_type="hamming", energy_floor=0, waveform_scale=32768, dither=0`` (WeSpeaker's
        features), the rest torchaudio's. For training set ``dither=1.0`` (one int16 step, as
        WeSpeaker): dither is applied in training mode only, so the same config embeds
        deterministically after ``.eval()``.

    Examples
    --------
    >>> frontend = Frontend()
    >>> feats, frames = frontend(torch.zeros(1, 32000))
    >>> tuple(feats.shape), build_frontend(frontend.config()).config() == frontend.config()
    ((1, 198, 80), True)
    """

    def __init__(self, cmn: bool = True, cmn_var: bool = False,
                 silence_rms: float = SILENCE_RMS, **fbank_options: Any) -> None:
        super().__init__()
        self.fbank = Fbank(**{**_DEFAULTS, **fbank_options})
        self.silence_rms = float(silence_rms)
        self.cmn = CMN(norm_means=True, norm_vars=cmn_var) if cmn or cmn_var else None
        self._cmn, self._cmn_var = bool(cmn), bool(cmn_var)
        if cmn_var and not cmn:
            raise R2NError("cmn_var=True needs cmn=True (variance normalisation subtracts the "
                           "mean first)")

    @property
    def num_features(self) -> int:
        """Feature dimension F (the model's ``feat_dim``)."""
        return self.fbank.num_features

    @property
    def feat_dim(self) -> int:
        """Alias of :attr:`num_features`, the name models and the SpeechBrain front-end use."""
        return self.fbank.num_features

    @property
    def sample_rate(self) -> int:
        """The waveform sample rate this front-end expects."""
        return int(self.fbank.sample_frequency)

    def forward(self, waveforms: Tensor, lengths: Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Features of a padded batch.

        Parameters
        ----------
        waveforms : Tensor (B, N)
            Float waveforms in [-1, 1] at ``sample_rate``.
        lengths : Tensor (B,), optional
            Valid samples per utterance (``None``: all ``N``).
        generator : torch.Generator, optional
            Source of the training-mode dither.

        Returns
        -------
        feats : Tensor (B, T, F)
            Normalised features; frames past each utterance's count are 0.
        frame_lengths : Tensor (B,) int64
            Valid (kept) frames per utterance.
        """
        feats, frame_lengths = self.fbank(waveforms, lengths, generator=generator)
        if self.silence_rms > 0.0 and not self.training:
            rms = self.fbank.frame_rms(waveforms, _lengths(waveforms, lengths), feats.shape[1])
            feats, frame_lengths = drop_frames(feats, frame_lengths, rms >= self.silence_rms)
        if self.cmn is not None:
            feats = self.cmn(feats, frame_lengths)
        return feats, frame_lengths

    def config(self) -> dict[str, Any]:
        """JSON-serialisable config; ``build_frontend(config)`` rebuilds this module."""
        return {"type": "kaldi", **self.fbank.options, "cmn": self._cmn, "cmn_var": self._cmn_var,
                "silence_rms": self.silence_rms}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Frontend":
        """Build from :meth:`config` output (the ``"type"`` key is optional here)."""
        options = {k: v for k, v in config.items() if k != "type"}
        known = set(inspect.signature(Fbank).parameters)
        own = {"cmn", "cmn_var", "silence_rms"}
        unknown = sorted(set(options) - known - own)
        if unknown:
            raise R2NError(f"unknown kaldi front-end options {unknown}; known: "
                           f"{sorted(known | own)}")
        return cls(**options)


def _lengths(waveforms: Tensor, lengths: Tensor | None) -> Tensor:
    if lengths is None:
        return torch.full((waveforms.shape[0],), waveforms.shape[1], dtype=torch.long,
                          device=waveforms.device)
    return lengths.to(device=waveforms.device, dtype=torch.long).clamp(max=waveforms.shape[1])


def inference_frontend_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config of what a front-end computes in evaluation mode: training-only options off
    (``dither`` 0), so that rebuilding it gives the features an embedder used."""
    return {**config, "dither": 0.0} if "dither" in config else dict(config)


def build_frontend(config: dict[str, Any]) -> nn.Module:
    """Build a front-end module from its config dict, dispatching on ``config["type"]``.

    ``"kaldi"`` gives :class:`Frontend`; ``"speechbrain"`` gives
    ``r2n_audio.features.speechbrain_fbank.SpeechBrainFrontend`` (SpeechBrain's Fbank and
    sentence mean normalisation, for imported SpeechBrain models), imported only when asked.

    Raises
    ------
    R2NError
        The config is not a dict, has no known ``"type"``, or has unknown options.
    """
    if not isinstance(config, dict) or "type" not in config:
        raise R2NError(f"a front-end config must be a dict with a 'type' key "
                       f"({sorted(FRONTEND_TYPES)}), got {config!r}")
    kind = config["type"]
    if kind not in FRONTEND_TYPES:
        raise R2NError(f"unknown front-end type {kind!r}; known: {sorted(FRONTEND_TYPES)}")
    module_name, class_name = FRONTEND_TYPES[kind]
    cls = getattr(importlib.import_module(module_name), class_name)
    if hasattr(cls, "from_config"):
        return cls.from_config(config)
    return cls(**{k: v for k, v in config.items() if k != "type"})
