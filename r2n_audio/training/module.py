"""``SpeakerModule``: front-end + backbone + cosine head + margin loss, trained with Lightning.

The module owns the steps: the batched fbank (and SpecAugment) run inside it, on whatever
device the model is on, so DataLoader workers only read and crop audio. Checkpoints carry the
full training state: weights, optimizer, LR schedule (Lightning), the loss margin (the loss's
extra state) and the torch / numpy / python RNG states (here), so a resumed run continues the
interrupted one exactly.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from r2n_audio.checkpoints import read_checkpoint
from r2n_audio.errors import ModelError
from r2n_audio.losses import CosineHead, build_loss
from r2n_audio.training.evaluation import embed_eval_batch, score_trials_eer

__all__ = ["SpeakerModule", "DEFAULT_FRONTEND", "lr_factor", "training_progress"]

DEFAULT_FRONTEND: dict[str, Any] = {"type": "kaldi", "num_mel_bins": 80, "cmn": True}


def lr_factor(progress: float, warmup: float, schedule: str, final_ratio: float) -> float:
    """Multiplier of the peak LR at ``progress`` in [0, 1] of training.

    ``warmup`` is the fraction of training spent warming up; the ramp is
    ``warm = min(1, progress / warmup)``.

    - ``"exponential"`` is WeSpeaker's ``ExponentialDecrease``: the decay runs from the first
      step, multiplied by the ramp: ``warm * final_ratio ** progress``, so it ends at
      ``final_ratio`` times the peak.
    - ``"cosine"`` is 3D-Speaker's ``WarmupCosineScheduler``: linear from ``final_ratio`` to 1
      over the warm-up, then half a cosine from 1 down to ``final_ratio``.
    - ``"constant"``: the ramp, then 1.

    >>> lr_factor(0.05, 0.1, "cosine", 0.0), round(lr_factor(0.55, 0.1, "cosine", 0.0), 6)
    (0.5, 0.5)
    >>> round(lr_factor(0.02, 0.04, "exponential", 0.0005), 6)  # 0.5 * 0.0005 ** 0.02
    0.429486
    """
    warm = min(1.0, progress / warmup) if warmup > 0 else 1.0
    if schedule == "exponential":
        return warm * final_ratio ** progress
    if schedule == "cosine":
        if progress < warmup:
            return final_ratio + (1.0 - final_ratio) * warm
        p = min(1.0, (progress - warmup) / max(1e-12, 1.0 - warmup))
        return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
    return warm


def training_progress(trainer: pl.Trainer) -> float:
    """Fraction of training done, in [0, 1]: steps over the planned steps, or, when the trainer
    has a time limit (``max_time``) that comes first, elapsed over allowed training time."""
    from pytorch_lightning.callbacks import Timer

    total = trainer.estimated_stepping_batches
    progress = trainer.global_step / total if 0 < total < float("inf") else 0.0
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is not None and timer._duration:
        progress = max(progress, (timer.time_elapsed("train") or 0.0) / timer._duration)
    return min(1.0, progress)


class SpeakerModule(pl.LightningModule):
    """Speaker-embedding training: ``frontend -> spec_augment -> backbone -> head -> loss``.

    Parameters
    ----------
    num_classes : int
        Outputs of the head (speakers, times the speeds with speed perturbation); LightningCLI
        links it from ``SpeakerDataModule.num_classes``.
    backbone : str
        Registry name (:func:`r2n_audio.models.create_model`).
    backbone_args : dict, optional
        Overrides for ``create_model``; ``feat_dim`` defaults to the front-end's feature size.
    frontend : dict, optional
        Front-end config for :func:`r2n_audio.features.frontend.build_frontend`
        (default :data:`DEFAULT_FRONTEND`: 80-bin Kaldi fbank + CMN).
    spec_augment : nn.Module, optional
        Applied to features ``(B, T, F)`` in training steps only.
    loss, scale, margin, easy_margin, num_subcenters, inter_topk, inter_margin
        Head and loss (:mod:`r2n_audio.losses`); ``loss`` is ``aam``, ``subcenter_aam`` or
        ``am``. A :class:`~r2n_audio.training.callbacks.MarginScheduler` moves the margin.
    optimizer : str
        ``"sgd"`` (momentum, Nesterov flag) or ``"adamw"``.
    lr, weight_decay, momentum, nesterov
        Optimizer settings, used as given (nothing scales them by batch size or world size).
    warmup_epochs : float
        Linear LR warm-up length in epochs (fractions allowed), i.e. the fraction
        ``warmup_epochs / max_epochs`` of training.
    lr_schedule : str
        ``"exponential"`` (WeSpeaker's: decay from the first step, times the warm-up ramp),
        ``"cosine"`` (3D-Speaker's: warm-up, then half a cosine) or ``"constant"`` (see
        :func:`lr_factor`), updated every batch from :func:`training_progress` (so a
        ``Trainer(max_time=...)`` budget that ends training before ``max_epochs`` still
        completes the schedule).
    final_lr_ratio : float
        LR at the end of training as a fraction of ``lr``, so the whole curve scales with the
        peak LR: WeSpeaker's 5e-5 / 0.1 = 5e-4 (its code scales both ends by the same factor),
        3D-Speaker's ERes2Net 5e-5 / 0.2 = 2.5e-4. In (0, 1] (0 allowed for ``"cosine"``).
    init_from : str, optional
        Checkpoint (or export bundle) whose weights start this run, for a second stage such as
        large-margin fine-tuning; loaded in ``setup``, not here. The backbone loads strictly;
        so does the head (every class of the first stage, all speeds included, as WeSpeaker
        and 3D-Speaker keep it). Unlike ``--ckpt_path`` (resume), optimizer, schedule and
        epoch start afresh.
    init_head : bool
        With ``init_from``: also load the head (a checkpoint whose class count differs is then
        an error). ``False`` starts a fresh head, e.g. to fine-tune on other speakers.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "ecapa_tdnn_c512",
        backbone_args: dict[str, Any] | None = None,
        frontend: dict[str, Any] | None = None,
        spec_augment: nn.Module | None = None,
        loss: str = "aam",
        scale: float = 32.0,
        margin: float = 0.2,
        easy_margin: bool = False,
        num_subcenters: int = 1,
        inter_topk: int = 0,
        inter_margin: float = 0.06,
        optimizer: str = "sgd",
        lr: float = 0.1,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        nesterov: bool = True,
        warmup_epochs: float = 6.0,
        lr_schedule: str = "exponential",
        final_lr_ratio: float = 5e-4,
        init_from: str | None = None,
        init_head: bool = True,
    ) -> None:
        super().__init__()
        from r2n_audio.features.frontend import build_frontend
        from r2n_audio.models import create_model

        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
        if lr_schedule not in ("exponential", "cosine", "constant"):
            raise ValueError(f"lr_schedule must be exponential, cosine or constant, "
                             f"got {lr_schedule!r}")
        # 0 only for cosine: an exponential decay to 0 is 0 ** progress, no LR at all.
        if not (0.0 < final_lr_ratio <= 1.0 or (final_lr_ratio == 0.0 and lr_schedule == "cosine")):
            raise ValueError(f"final_lr_ratio is the final LR over the peak LR, in (0, 1] "
                             f"(0 only for a cosine schedule), got {final_lr_ratio}")
        self.save_hyperparameters(ignore=["spec_augment"])
        self.frontend_config = dict(frontend or DEFAULT_FRONTEND)
        self.frontend = build_frontend(self.frontend_config)
        self.model_args = dict(backbone_args or {})
        self.model_args.setdefault("feat_dim", int(self.frontend.num_features))
        self.backbone_name = backbone
        self.backbone = create_model(backbone, **self.model_args)
        self.spec_augment = spec_augment
        self.head = CosineHead(self.backbone.embed_dim, num_classes, num_subcenters)
        self.loss_fn = build_loss(loss, scale=scale, margin=margin, **(
            {"easy_margin": easy_margin, "inter_topk": inter_topk, "inter_margin": inter_margin}
            if loss != "am" else {}))
        self._val_keys: list[str] = []
        self._val_embeddings: list[torch.Tensor] = []

    # ------------------------------------------------------------------ forward
    def features(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None):
        """Waveforms ``(B, N)`` in [-1, 1] -> features ``(B, T, F)`` and frame lengths ``(B,)``."""
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            feats, frame_lengths = self.frontend(waveforms.float(), lengths)
        if self.training and self.spec_augment is not None:
            feats = self.spec_augment(feats)
        return feats, frame_lengths

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings ``(B, D)`` of waveforms ``(B, N)`` (``lengths`` in samples, or None)."""
        feats, frame_lengths = self.features(waveforms, lengths)
        return self.backbone(feats, None if lengths is None else frame_lengths)

    # ------------------------------------------------------------------ training
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.init_from:
            self._load_initial_weights(self.hparams.init_from)

    def _load_initial_weights(self, path: str) -> None:
        state = read_checkpoint(path)
        if state.get("format") == "r2n-audio-bundle":  # an export bundle: the backbone only
            self.backbone.load_state_dict(state["state_dict"])
            return
        weights = state.get("state_dict", state)
        self.backbone.load_state_dict({k[len("backbone."):]: v for k, v in weights.items()
                                       if k.startswith("backbone.")})
        head = weights.get("head.weight")
        if head is None or not self.hparams.init_head:
            return
        if head.shape != self.head.weight.shape:
            raise ModelError(
                f"{path}: its head has {head.shape[0]} rows, this run's "
                f"{self.head.weight.shape[0]}: train on the same data with the same speed "
                f"perturbation as the first stage (the large-margin stage keeps every speed "
                f"class), or pass --model.init_head=false to start a fresh head")
        with torch.no_grad():
            self.head.weight.copy_(head)

    def on_fit_start(self) -> None:
        data = self.trainer.datamodule
        if self.logger is not None and hasattr(data, "num_speakers"):
            self.logger.log_hyperparams({"num_speakers": data.num_speakers,
                                         "num_classes": data.num_classes})

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        waveforms, labels = batch[0], batch[1]
        cosines = self.head(self(waveforms))
        loss = self.loss_fn(cosines.float(), labels)
        acc = (cosines.argmax(dim=1) == labels).float().mean()
        self.log_dict({"train/loss": loss, "train/acc": acc}, prog_bar=True, on_step=True,
                      on_epoch=True, sync_dist=False)
        self.log_dict({"train/margin": self.loss_fn.margin,
                       "train/lr": self.trainer.optimizers[0].param_groups[0]["lr"]},
                      prog_bar=False, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov,
                                  weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        epochs = self.trainer.max_epochs
        warmup = hp.warmup_epochs / epochs if epochs and epochs > 0 else 0.0
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: lr_factor(
            training_progress(self.trainer), warmup, hp.lr_schedule, hp.final_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch, batch_idx: int) -> None:
        keys, waveforms, lengths = batch[0], batch[1], batch[2]  # an EvalBatch
        if not len(keys):
            return
        # The one embedding path (windows, silence dropped), as `r2n-audio embed` embeds.
        emb, valid = embed_eval_batch(self, waveforms, lengths)
        self._val_keys.extend(k for k, ok in zip(keys, valid.tolist()) if ok)
        self._val_embeddings.append(torch.from_numpy(emb[valid]))

    def on_validation_epoch_end(self) -> None:
        trials = getattr(self.trainer.datamodule, "trials", None) if self.trainer else None
        keys, embs = self._val_keys, self._val_embeddings
        self._val_keys, self._val_embeddings = [], []
        if trials is None or not embs:
            return
        local = (keys, torch.cat(embs))
        if self.trainer.world_size > 1:  # ranks hold different utterances: gather them all
            gathered: list = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, local)
            keys = [k for part in gathered for k in part[0]]
            emb = torch.cat([part[1] for part in gathered])
        else:
            emb = local[1]
        metrics = score_trials_eer(trials, dict(zip(keys, emb.numpy())))
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, prog_bar=True,
                      sync_dist=False, rank_zero_only=False)

    # ------------------------------------------------------------------ checkpoint state
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        np_state = np.random.get_state(legacy=False)
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "numpy": {"bit_generator": np_state["bit_generator"],
                      "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                      "pos": int(np_state["state"]["pos"]),
                      "has_gauss": int(np_state["has_gauss"]),
                      "gauss": float(np_state["gauss"])},
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            # Augmentation modules (SpecAugment) draw from their own numpy generators.
            "modules": {name: m.rng.bit_generator.state for name, m in self._rng_modules()},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        n = states["numpy"]
        np.random.set_state({"bit_generator": n["bit_generator"],
                             "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                             "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
        py = states["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
        for name, m in self._rng_modules():
            if name in states.get("modules", {}):
                m.rng.bit_generator.state = states["modules"][name]

    def _rng_modules(self):
        return [(name, m) for name, m in self.named_modules()
                if isinstance(getattr(m, "rng", None), np.random.Generator)]

    # ------------------------------------------------------------------ export
    def bundle(self, embedding_mean: torch.Tensor | None = None,
               meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """The export bundle of the embedding network (no head): see
        :func:`r2n_audio.inference.bundle.make_bundle`."""
        from r2n_audio.inference.bundle import make_bundle

        sample_rate = int(self.frontend_config.get("sample_frequency", 16000))
        return make_bundle(self.backbone_name, self.model_args, self.backbone.state_dict(),
                           self.frontend.config(), sample_rate=sample_rate,
                           embedding_mean=embedding_mean, meta=meta)
