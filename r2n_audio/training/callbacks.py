"""Training callbacks: the margin schedule (WeSpeaker and 3D-Speaker style), and per-epoch
checkpoints that live under the run's root folder."""

from __future__ import annotations

import math
import os

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

__all__ = ["MarginScheduler", "margin_at", "EpochCheckpoint"]


def margin_at(epoch: float, final_margin: float, start_epoch: float, end_epoch: float,
              mode: str = "exponential", initial_margin: float = 0.0) -> float:
    """Margin at a (fractional) epoch: ``initial_margin`` until ``start_epoch``, then rising to
    ``final_margin`` at ``end_epoch``, flat after.

    ``mode="linear"`` rises linearly; ``"exponential"`` follows WeSpeaker's
    ``1 - 1e-3 ** t`` curve (``t`` the fraction of the ramp done), fast at first then flat.
    """
    if epoch >= end_epoch:  # first: a ramp of length 0 gives the final margin from step 0
        return final_margin
    if epoch <= start_epoch:
        return initial_margin
    t = (epoch - start_epoch) / (end_epoch - start_epoch)
    ratio = t if mode == "linear" else 1.0 - math.exp(t * math.log(1e-3))
    return initial_margin + (final_margin - initial_margin) * ratio


class MarginScheduler(pl.Callback):
    """Set the loss margin before every training batch from the fractional epoch.

    Parameters
    ----------
    final_margin : float
        Margin from ``end_epoch`` on (0.2 for AAM in WeSpeaker's VoxCeleb recipe).
    start_epoch, end_epoch : float
        The ramp; ``0`` / ``0`` means the final margin from the first step.
    mode : str
        ``"exponential"`` or ``"linear"`` (see :func:`margin_at`).
    initial_margin : float
        Margin before ``start_epoch``.

    The epoch is the fractional position in training
    (:func:`~r2n_audio.training.module.training_progress` times ``max_epochs``; under a
    ``max_time`` budget that ends first, the time fraction), so the ramp completes either way.
    The loss keeps the margin in checkpoints.
    """

    def __init__(self, final_margin: float = 0.2, start_epoch: float = 20.0,
                 end_epoch: float = 40.0, mode: str = "exponential",
                 initial_margin: float = 0.0) -> None:
        if mode not in ("exponential", "linear"):
            raise ValueError(f"mode must be 'exponential' or 'linear', got {mode!r}")
        self.final_margin = final_margin
        self.start_epoch = start_epoch
        self.end_epoch = end_epoch
        self.mode = mode
        self.initial_margin = initial_margin

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch, batch_idx: int) -> None:
        from r2n_audio.training.module import training_progress

        if trainer.max_epochs and trainer.max_epochs > 0:
            epoch = training_progress(trainer) * trainer.max_epochs
        else:
            batches = max(1.0, float(trainer.num_training_batches))
            epoch = trainer.current_epoch + batch_idx / batches
        pl_module.loss_fn.set_margin(margin_at(epoch, self.final_margin, self.start_epoch,
                                               self.end_epoch, self.mode, self.initial_margin))


class EpochCheckpoint(ModelCheckpoint):
    """A checkpoint every epoch (plus ``last.ckpt``) in ``<default_root_dir>/<subdir>``.

    Lightning's ``ModelCheckpoint`` writes into the logger's versioned folder unless a
    ``dirpath`` is given, and a config that gives one keeps writing there whatever
    ``--trainer.default_root_dir`` says. This one resolves its folder from the trainer's root
    folder when training starts, so a config's outputs follow the root dir: one run per root,
    and a second stage (large-margin fine-tuning) in its own ``subdir`` of the same model.

    Parameters
    ----------
    subdir : str
        Folder under ``trainer.default_root_dir``.
    dirpath : str, optional
        An explicit folder instead (Lightning's meaning; ``subdir`` is then unused).
    filename, save_top_k, save_last, every_n_epochs
        As ``ModelCheckpoint``; the defaults keep every epoch, named ``epoch=007.ckpt``, the
        files that :mod:`r2n_audio.training.averaging` reads.
    """

    def __init__(self, subdir: str = "checkpoints", dirpath: str | None = None,
                 filename: str = "{epoch:03d}", save_top_k: int = -1, save_last: bool = True,
                 every_n_epochs: int = 1) -> None:
        # Saved at the end of each training epoch: left to Lightning, a run validating every
        # 5 epochs would save only those epochs, and "the last 10" would span 50.
        super().__init__(dirpath=dirpath, filename=filename, save_top_k=save_top_k,
                         save_last=save_last, every_n_epochs=every_n_epochs,
                         save_on_train_epoch_end=True)
        self.subdir = subdir

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.dirpath is None:  # resolved here: the root dir is known only now
            self.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, self.subdir))
        super().setup(trainer, pl_module, stage)
