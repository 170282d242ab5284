"""Turn other toolkits' pretrained speaker models into r2n-audio bundles, one module per toolkit.

=============  =====================================================  =========================
kind           what it reads                                          module
=============  =====================================================  =========================
speechbrain    ``hyperparams.yaml`` + ``embedding_model.ckpt``         :mod:`.speechbrain`
wespeaker      ``config.yaml`` + ``avg_model.pt``                      :mod:`.wespeaker`
3dspeaker      ModelScope folder: bare state dict (+ json)             :mod:`.threed_speaker`
pyannote       ``pytorch_model.bin`` (Lightning checkpoint)            :mod:`.pyannote`
=============  =====================================================  =========================

Each importer reproduces its toolkit's own extraction (front-end: waveform scale, window,
dither 0, mean normalisation; its output layer) in the bundle. Every checkpoint is read through
:func:`r2n_audio.checkpoints.read_checkpoint` (weights only; pyannote's objects through a named
allow-list); a checkpoint that fits no architecture fails naming the nearest one and its first
mismatching keys. A source may be a Hugging Face hub id (:mod:`.hub`).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from r2n_audio.errors import ModelError
from r2n_audio.inference.importers.hub import resolve_source
from r2n_audio.inference.importers.pyannote import import_pyannote
from r2n_audio.inference.importers.speechbrain import import_speechbrain, read_hyperparams
from r2n_audio.inference.importers.threed_speaker import import_3dspeaker
from r2n_audio.inference.importers.wespeaker import import_wespeaker

__all__ = ["IMPORTERS", "import_model", "import_speechbrain", "import_wespeaker",
           "import_3dspeaker", "import_pyannote", "read_hyperparams"]

IMPORTERS: dict[str, Callable[..., dict[str, Any]]] = {
    "speechbrain": import_speechbrain, "wespeaker": import_wespeaker,
    "3dspeaker": import_3dspeaker, "pyannote": import_pyannote}


def import_model(kind: str, src: str | os.PathLike, arch: str | None = None) -> dict[str, Any]:
    """Bundle of the pretrained model ``src`` (a folder or a hub id) from toolkit ``kind``.

    Parameters
    ----------
    kind : str
        One of :data:`IMPORTERS`.
    src : path or str
        The model's folder as the toolkit ships it, or a Hugging Face hub id.
    arch : str, optional
        Architecture name, where the toolkit's importer takes one (wespeaker: a WeSpeaker model
        name; 3dspeaker: a key of ``THREED_SPEAKER_MODELS``; pyannote: a pyannote class).

    Raises
    ------
    ModelError
        Unknown kind, source, architecture or a checkpoint that fits none (one line).
    """
    if kind not in IMPORTERS:
        raise ModelError(f"unknown source toolkit {kind!r}; choose from {sorted(IMPORTERS)}")
    folder = resolve_source(src)
    if arch is None:
        return IMPORTERS[kind](folder)
    if kind == "speechbrain":
        raise ModelError("--arch does not apply to speechbrain (hyperparams.yaml names the model)")
    return IMPORTERS[kind](folder, arch=arch)
