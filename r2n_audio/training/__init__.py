"""Training with Lightning: :class:`SpeakerModule`, :class:`SpeakerDataModule`, callbacks, CLI.

Needs the ``train`` extra (pytorch-lightning, jsonargparse); the rest of the package never
imports this subpackage.
"""

from r2n_audio.training.callbacks import MarginScheduler
from r2n_audio.training.datamodule import SpeakerDataModule
from r2n_audio.training.module import SpeakerModule

__all__ = ["SpeakerModule", "SpeakerDataModule", "MarginScheduler"]
