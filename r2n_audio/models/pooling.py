"""Temporal pooling that honours ``lengths``: statistics pooling (x-vector / WeSpeaker TSTP)
and attentive statistics pooling with global context (ECAPA-TDNN, Desplanques et al. 2020).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from r2n_audio.models.layers import (Conv1dNested, TDNNBlock, fast_inference, padded_lengths,
                                      time_mask)

__all__ = ["StatisticsPooling", "AttentiveStatisticsPooling", "ChannelAttentiveStatisticsPooling"]


def _weighted_stats(x: torch.Tensor, w: torch.Tensor, eps: float, buffer: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over time of ``x (B, C, T)`` with weights ``w`` summing to 1 over time.

    ``w (B, 1, T)`` shared by all channels (uniform over valid frames): ``E[x^2] - E[x]^2`` by
    two batched matrix-vector products. ``w (B, C, T)`` (attention, often peaked): the centred
    two-pass form, since the one-pass form loses ~1e-4 there; with a spare ``buffer`` shaped
    like ``x`` (inference) its products are written there instead of into new ``(B, C, T)``
    tensors (same numbers; a large new tensor costs as much as a pass in page faults).
    """
    if w.size(1) == 1:
        wt = w.transpose(1, 2)
        mean = torch.bmm(x, wt).squeeze(2)
        sq = torch.bmm(x * x, wt).squeeze(2)
        return mean, (sq - mean * mean).clamp(min=eps).sqrt()
    if buffer is not None:
        mean = torch.mul(x, w, out=buffer).sum(2)
        var = torch.sub(x, mean.unsqueeze(2), out=buffer).square_().mul_(w).sum(2)
        return mean, var.clamp(min=eps).sqrt()
    mean = (x * w).sum(2)
    var = (w * (x - mean.unsqueeze(2)).pow(2)).sum(2)
    return mean, var.clamp(min=eps).sqrt()


class StatisticsPooling(nn.Module):
    """Mean and standard deviation over the valid frames, concatenated.

    The standard deviation is WeSpeaker's TSTP one: ``sqrt(unbiased variance + 1e-7)``
    (a single frame gives ``sqrt(1e-7)``), so WeSpeaker ResNet weights reproduce its outputs.

    Shapes: ``x (B, C, T)`` (or ``(B, C, F, T)``, flattened channel-major to ``C*F``),
    ``lengths (B,)`` or None -> ``(B, 2 C)``.
    """

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        x = x.flatten(1, -2)
        if lengths is None:
            mean = x.mean(2)
            var = x.var(2) if x.size(2) > 1 else torch.zeros_like(mean)
        else:
            mask = time_mask(lengths, x.size(2), x.dtype).unsqueeze(1)
            n = lengths.to(x.dtype).unsqueeze(1)
            mean = (x * mask).sum(2) / n
            var = ((x - mean.unsqueeze(2)).pow(2) * mask).sum(2) / (n - 1).clamp(min=1)
        return torch.cat([mean, (var + self.eps).sqrt()], dim=1)


class AttentiveStatisticsPooling(nn.Module):
    """Attentive statistics pooling with global context, SpeechBrain 1.1.2 layout.

    Frames are scored by ``conv(tanh(tdnn([x, mean, std])))`` (``tdnn``: 1x1 TDNN block
    ``3C -> A``, ``conv``: ``A -> C``), softmaxed over the valid frames per channel, and the
    weighted mean and std are returned. Instead of tiling the utterance mean and std over time
    and convolving ``3C`` channels (as SpeechBrain does), the tdnn weight is split so the
    global part is one matrix-vector product per utterance: same result, a third of the work.

    Parameters
    ----------
    channels : int
        ``C``, input channels.
    attention_channels : int
        ``A``, hidden width of the attention (128 in ECAPA-TDNN).
    global_context : bool
        Append the utterance mean and std to every frame before scoring.

    Shapes: ``x (B, C, T)``, ``lengths (B,)`` or None, ``projected (B, A, T)`` or None
    -> ``(B, 2 C)``.
    """

    def __init__(self, channels: int, attention_channels: int = 128, global_context: bool = True) -> None:
        super().__init__()
        self.eps = 1e-12
        self.global_context = global_context
        self.tdnn = TDNNBlock(channels * (3 if global_context else 1), attention_channels, 1, 1)
        self.conv = Conv1dNested(attention_channels, channels, 1)

    def frame_projection(self, x: torch.Tensor) -> torch.Tensor | None:
        """The frame part of the tdnn, ``(B, A, T)`` for ``x (B, C, T)`` (None without global
        context). It owes nothing to the utterance, so windows pooled from one frame map
        share it: :func:`~r2n_audio.inference.shared_frames.pool_windows` computes it once
        per map instead of once per window (context windows cover each frame four times)."""
        if not self.global_context:
            return None
        return F.conv1d(x, self.tdnn.conv.conv.weight[:, : x.size(1)])

    def _hidden(self, x: torch.Tensor, mask: torch.Tensor, n: torch.Tensor,
                projected: torch.Tensor | None) -> torch.Tensor:
        conv = self.tdnn.conv.conv
        if not self.global_context:
            return self.tdnn(x)
        c = x.size(1)
        mean, std = _weighted_stats(x, mask / n, self.eps)
        w = conv.weight.squeeze(2)
        ctx = mean @ w[:, c : 2 * c].t() + std @ w[:, 2 * c :].t() + conv.bias
        if projected is None:
            projected = self.frame_projection(x)
        return self.tdnn.norm(F.relu(projected + ctx.unsqueeze(2)))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                projected: torch.Tensor | None = None) -> torch.Tensor:
        """``projected``: :meth:`frame_projection` of ``x`` when already at hand (same result;
        padded frames must be zero in both)."""
        frames = x.size(2)
        if lengths is None:
            lengths = torch.full((x.size(0),), frames, dtype=torch.long, device=x.device)
        mask = time_mask(lengths, frames, x.dtype).unsqueeze(1)
        n = lengths.to(x.dtype).view(-1, 1, 1)
        scores = self.conv(torch.tanh(self._hidden(x, mask, n, projected)))
        if padded_lengths(lengths, frames) is not None:  # else nothing to mask
            scores = scores.masked_fill_(mask == 0, float("-inf"))
        attn = scores.softmax(dim=2)
        mean, std = _weighted_stats(x, attn, self.eps, scores if fast_inference() else None)
        return torch.cat([mean, std], dim=1)


class ChannelAttentiveStatisticsPooling(nn.Module):
    """Channel-dependent attentive statistics without global context, WeSpeaker's ``ASP``
    (SimAM-ResNet): ``attention`` = 1x1 conv ``D -> A``, ReLU, BatchNorm, 1x1 conv ``A -> D``,
    softmax over the valid frames; returns the weighted mean and ``sqrt(max(E[x^2] - mean^2,
    1e-5))``. Module indices match WeSpeaker's Sequential (``attention.0``, ``.2``, ``.3``).

    Shapes: ``x (B, C, F, T)`` (flattened channel-major to ``D = C*F``) or ``(B, D, T)``,
    ``lengths (B,)`` or None -> ``(B, 2 D)``.
    """

    def __init__(self, in_dim: int, attention_channels: int = 128) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.Conv1d(in_dim, attention_channels, 1), nn.ReLU(inplace=True),
            nn.BatchNorm1d(attention_channels), nn.Conv1d(attention_channels, in_dim, 1),
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        x = x.flatten(1, -2)
        w = self.attention(x)
        if lengths is not None:
            w = w.masked_fill(time_mask(lengths, x.size(2)).unsqueeze(1) == 0, float("-inf"))
        weighted = w.softmax(dim=2) * x
        mean = weighted.sum(2)
        var = (weighted * x).sum(2) - mean * mean  # WeSpeaker's one-pass form
        return torch.cat([mean, var.clamp(min=1e-5).sqrt()], dim=1)
