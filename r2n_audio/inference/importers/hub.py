"""Hugging Face Hub ids as import sources: ``r2n-audio import pyannote
pyannote/wespeaker-voxceleb-resnet34-LM -o model.pt``.

A source that is not an existing path but looks like ``owner/name`` is fetched with
``huggingface_hub.snapshot_download`` into the usual cache (``HF_HOME`` / ``HF_HUB_CACHE``, where
later runs and other tools find it); with ``HF_HUB_OFFLINE=1`` or no network the cached snapshot
is used. ``huggingface_hub`` is optional: without it a hub id is refused with the install hint.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from r2n_audio.errors import ModelError

__all__ = ["is_hub_id", "resolve_source"]

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_hub_id(source: str) -> bool:
    """Whether ``source`` has the shape of a hub repo id (``owner/name``)."""
    return bool(_HUB_ID.fullmatch(source)) and ".." not in source


def resolve_source(source: str | os.PathLike) -> Path:
    """The local folder of ``source``: the folder itself, or a hub id's cached snapshot.

    Raises
    ------
    ModelError
        Not a folder and not a hub id; a hub id without ``huggingface_hub``; a hub id that is
        neither cached nor reachable (one line, nothing downloaded partially is used).
    """
    path = Path(source)
    if path.is_dir():
        return path
    if path.exists() or not is_hub_id(str(source)):
        raise ModelError(f"{source}: not a folder; pass the pretrained model's folder (or a "
                         f"Hugging Face hub id such as owner/name)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelError(f"{source}: not a folder, and hub ids need huggingface_hub "
                         f"(pip install huggingface_hub)") from None
    try:
        return Path(snapshot_download(repo_id=str(source)))
    except Exception as err:  # noqa: BLE001 (offline, not found, gated, HTTP: all one line)
        first = (str(err).strip().splitlines() or [""])[0].split(". ")[0][:160]
        raise ModelError(f"{source}: cannot get this hub model: not in the local cache and the "
                         f"hub cannot be reached or refused it ({type(err).__name__}: {first})"
                         ) from None
