"""Cosine classifier head and margin-based softmax losses for speaker training.

The head and the losses are kept apart from the embedding network (3D-Speaker's layout): the
backbone maps features to an embedding, :class:`CosineHead` maps the embedding to one cosine per
speaker (the best of ``K`` sub-centres), and a margin loss turns cosines and labels into a
scalar. Only the backbone is exported.

Losses
------
- :class:`AAMSoftmax` (ArcFace, Deng et al. 2019): target logit ``s * cos(theta + m)``; with
  ``inter_topk > 0`` it also adds the inter-top-K penalty of WeSpeaker (Zhao et al. 2021): the
  ``k`` hardest non-target logits become ``s * cos(theta - m')``.
- :class:`AMSoftmax` (CosFace, Wang et al. 2018): target logit ``s * (cos - m)``.
- Sub-centre AAM (Deng et al. 2020) is :class:`AAMSoftmax` over a :class:`CosineHead` with
  ``num_subcenters > 1``; :func:`build_loss` names it ``"subcenter_aam"``.

``cos(theta + m)`` is computed as ``cos*cos(m) - sin*sin(m)`` with
``sin = sqrt(clamp(1 - cos^2, eps))``, never through ``acos``: the derivative of ``acos`` is
infinite at +-1, the clamped square root has a finite one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CosineHead", "MarginLoss", "AAMSoftmax", "AMSoftmax", "build_loss", "LOSSES"]

_SIN_EPS = 1e-7


def _full_precision(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32, or as it is when already float32 / float64."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class CosineHead(nn.Module):
    """Cosine similarity between embeddings and learned speaker centres.

    Parameters
    ----------
    embed_dim : int
        Embedding size ``D``.
    num_classes : int
        Number of speakers ``C``.
    num_subcenters : int
        ``K`` centres per speaker; the cosine of a speaker is the largest over its centres
        (sub-centre ArcFace). 1 gives the usual head.

    Shapes: ``forward(embeddings (B, D)) -> cosines (B, C)``, float32 even under autocast.
    """

    def __init__(self, embed_dim: int, num_classes: int, num_subcenters: int = 1) -> None:
        super().__init__()
        if num_classes < 1 or num_subcenters < 1:
            raise ValueError(f"num_classes ({num_classes}) and num_subcenters ({num_subcenters}) "
                             f"must be >= 1")
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.num_subcenters = num_subcenters
        self.weight = nn.Parameter(torch.empty(num_classes * num_subcenters, embed_dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        # fp32 whatever the autocast context: in bf16 the cosines would move in steps of
        # 2^-8, i.e. logits off by up to 0.06 at scale 32, enough to blur a 0.2 margin.
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            cos = F.linear(F.normalize(_full_precision(embeddings), dim=-1),
                           F.normalize(_full_precision(self.weight), dim=-1))
        if self.num_subcenters > 1:
            cos = cos.view(-1, self.num_classes, self.num_subcenters).amax(dim=-1)
        return cos

    def extra_repr(self) -> str:
        return f"{self.embed_dim}, {self.num_classes}, num_subcenters={self.num_subcenters}"


class MarginLoss(nn.Module):
    """Base of the margin losses: scale ``s``, a margin, ``set_margin``.

    The margin is saved in the module's state dict (as extra state) so that checkpoints carry it
    and a resumed run continues the margin schedule where it stopped.

    ``forward(cosines (B, C), labels (B,) int64) -> loss ()``, computed in float32 with autocast
    off; :meth:`logits` gives the scaled logits ``(B, C)`` the cross-entropy is taken on.
    """

    def __init__(self, scale: float = 32.0, margin: float = 0.2) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = float(scale)
        self.margin = float(margin)

    def set_margin(self, margin: float) -> None:
        """Change the margin (called by :class:`~r2n_audio.training.callbacks.MarginScheduler`)."""
        self.margin = float(margin)

    def get_extra_state(self) -> dict:
        return {"margin": self.margin}

    def set_extra_state(self, state: dict) -> None:
        self.margin = float(state["margin"])

    def logits(self, cosines: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, cosines: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=cosines.device.type, enabled=False):
            return F.cross_entropy(self.logits(_full_precision(cosines), labels), labels)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, margin={self.margin:.4f}"


class AAMSoftmax(MarginLoss):
    """Additive angular margin softmax (ArcFace), optionally with the inter-top-K penalty.

    Parameters
    ----------
    scale : float
        Logit scale ``s`` (32 in WeSpeaker, 30 in SpeechBrain).
    margin : float
        Angular margin ``m`` in radians (0.2 typical; 0.5 in large-margin fine-tuning).
    easy_margin : bool
        Apply the margin only where ``cos > 0`` (InsightFace's option). Otherwise, where
        ``theta + m`` would pass pi the target logit continues as ``cos - m*sin(m)`` so it stays
        decreasing in ``theta``.
    inter_topk : int
        Penalise the ``k`` largest non-target cosines of each row (0 disables).
    inter_margin : float
        Penalty margin ``m'`` in radians: those logits become ``s * cos(theta - m')``.
    """

    def __init__(self, scale: float = 32.0, margin: float = 0.2, easy_margin: bool = False,
                 inter_topk: int = 0, inter_margin: float = 0.06) -> None:
        super().__init__(scale, margin)
        self.easy_margin = easy_margin
        self.inter_topk = int(inter_topk)
        self.inter_margin = float(inter_margin)

    def _target_logit(self, cos: torch.Tensor) -> torch.Tensor:
        m = self.margin
        sin = torch.sqrt(torch.clamp(1.0 - cos * cos, min=_SIN_EPS))
        phi = cos * math.cos(m) - sin * math.sin(m)
        if self.easy_margin:
            return torch.where(cos > 0, phi, cos)
        # Beyond theta = pi - m, cos(theta + m) would turn back up; continue linearly instead.
        return torch.where(cos > math.cos(math.pi - m), phi, cos - math.sin(math.pi - m) * m)

    def _inter_topk(self, cos: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
        k = min(self.inter_topk, cos.shape[1] - 1)
        if k <= 0 or self.inter_margin == 0:
            return cos
        others = cos.masked_fill(one_hot, -2.0)
        _, idx = others.topk(k, dim=1)
        hard = torch.zeros_like(one_hot).scatter_(1, idx, True)
        sin = torch.sqrt(torch.clamp(1.0 - cos * cos, min=_SIN_EPS))
        mp = self.inter_margin
        penalised = cos * math.cos(mp) + sin * math.sin(mp)
        return torch.where(hard, penalised, cos)

    def logits(self, cosines: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = cosines.clamp(-1.0, 1.0)
        one_hot = F.one_hot(labels, cos.shape[1]).bool()
        out = torch.where(one_hot, self._target_logit(cos), cos)
        if self.inter_topk > 0:
            out = torch.where(one_hot, out, self._inter_topk(cos, one_hot))
        return self.scale * out

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, easy_margin={self.easy_margin}, "
                f"inter_topk={self.inter_topk}, inter_margin={self.inter_margin}")


class AMSoftmax(MarginLoss):
    """Additive margin softmax (CosFace): target logit ``s * (cos - m)``.

    Parameters
    ----------
    scale : float
        Logit scale ``s``.
    margin : float
        Cosine margin ``m`` (0.2 typical).
    """

    def logits(self, cosines: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(labels, cosines.shape[1]).to(cosines.dtype)
        return self.scale * (cosines - self.margin * one_hot)


LOSSES = {"aam": AAMSoftmax, "subcenter_aam": AAMSoftmax, "am": AMSoftmax}


def build_loss(name: str, **kwargs) -> MarginLoss:
    """Make a loss by name: ``"aam"``, ``"subcenter_aam"`` (AAM; pair it with a head with
    ``num_subcenters > 1``) or ``"am"``; ``kwargs`` go to the class."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name](**kwargs)
