"""ECAPA-TDNN in WeSpeaker's layout (``wespeaker/models/ecapa_tdnn.py``).

Desplanques, Thienpondt and Demuynck, "ECAPA-TDNN: Emphasized Channel Attention, Propagation
and Aggregation in TDNN Based Speaker Verification", Interspeech 2020 (arXiv:2005.07143).

Factories and the upstream function each reproduces (wespeaker-unofficial 0.0.2, feat_dim 80,
embed_dim 192, ``pooling_func="ASTP"``, ``emb_bn=False``); the state_dict keys are WeSpeaker's,
so its checkpoints load with ``strict=True`` and no key mapping (drop the ``projection.*`` head
of ``avg_model.pt`` first):

- ``ecapa_tdnn_ws_c512``: ``ECAPA_TDNN_c512``, 5,797,504 parameters.
- ``ecapa_tdnn_ws_c1024``: ``ECAPA_TDNN_c1024``, 14,263,872 parameters.
- ``ecapa_tdnn_ws_glob_c512``: ``ECAPA_TDNN_GLOB_c512``, 6,190,720 parameters.
- ``ecapa_tdnn_ws_glob_c1024``: ``ECAPA_TDNN_GLOB_c1024``, 14,657,088 parameters (the
  published 14.65M model). ``emb_bn=True`` adds ``bn2`` (WeSpeaker's SSL option).
- ``ecapa_tdnn_ws_tiny``: a small layout for tests.

Where WeSpeaker differs from SpeechBrain (:mod:`r2n_audio.models.res2net1d`): zero "same"
padding; every block conv -> ReLU -> BN; the Res2Net convolves the *first* split and passes the
last through; SE with ``nn.Linear`` layers and an unmasked-by-design mean; blocks chained
(``layer3(out2)``, in this version), each returning ``x + block(x)``; MFA a plain 1x1 conv to
``mfa_channels`` (1536 whatever the width) and ReLU, no BN; attention ``linear2(tanh(linear1(.)))``
without BN, global context with the unbiased ``sqrt(var + 1e-7)``; pooled std
``sqrt(max(var, 1e-7))``; BatchNorm then ``nn.Linear`` to the embedding. WeSpeaker's forward
returns ``(out4, embedding)``; ours returns the embedding.

Padding: frames past each length are zeroed before every convolution wider than one frame, and
the SE means, context statistics and attention softmax use valid frames only, so **a padded
batch equals each utterance alone** (eval mode). With nothing padded no mask is built.

Inference (no autograd, not tracing): the Res2 splits' BatchNorms write into one output buffer,
the blocks write into the MFA input (no concatenations), and the attention softmax and the
weighted moments run in place; the context statistics enter ``linear1`` as one matrix-vector
product per utterance rather than as ``2 C`` tiled channels.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from r2n_audio.models.layers import (bn_affine, check_lengths, fast_inference, padded_lengths,
                                      time_mask)
from r2n_audio.models.registry import build, register_model

__all__ = ["EcapaTdnnWeSpeaker", "AttentiveStatsPoolWeSpeaker"]


def _mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask


class Conv1dReluBn(nn.Module):
    """Conv1d (bias, zero padding) -> ReLU -> BatchNorm1d. ``(B, C_in, T) -> (B, C_out, T)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> None:
        super().__init__()
        pad = (kernel_size - 1) // 2 * dilation
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=pad, dilation=dilation)
        self.bn = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu_(self.conv(x))  # conv backward needs no output
        if fast_inference() and not self.bn.training:  # BN in place: no second (B, C, T) tensor
            scale, shift = bn_affine(self.bn)
            return h.mul_(scale.unsqueeze(1)).add_(shift.unsqueeze(1))
        return self.bn(h)


class Res2Conv1dReluBn(nn.Module):
    """WeSpeaker's Res2Net convolution: ``y_0 = f_0(x_0)``, ``y_i = f_i(x_i + y_{i-1})`` for
    ``i < scale - 1``, the last split passed through; ``f_i`` conv -> ReLU -> BN.

    Shapes: ``x (B, C, T)``, ``mask (B, 1, T) | None`` -> ``(B, C, T)``.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int = 8) -> None:
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels ({channels}) must be divisible by scale ({scale})")
        self.width = channels // scale
        pad = (kernel_size - 1) // 2 * dilation
        nums = 1 if scale == 1 else scale - 1
        self.convs = nn.ModuleList(nn.Conv1d(self.width, self.width, kernel_size, padding=pad, dilation=dilation)
                                   for _ in range(nums))
        self.bns = nn.ModuleList(nn.BatchNorm1d(self.width) for _ in range(nums))
        self.scale = scale

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        spx = _mask(x, mask).split(self.width, 1)
        if fast_inference() and not self.training:
            return self._into_buffer(spx, mask)
        out = []
        sp = spx[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            sp = _mask(bn(torch.relu_(conv(sp if i == 0 else sp + spx[i]))), mask)
            out.append(sp)
        if self.scale != 1:
            out.append(spx[-1])
        return torch.cat(out, dim=1)

    def _into_buffer(self, spx: tuple[torch.Tensor, ...], mask: torch.Tensor | None) -> torch.Tensor:
        """Inference: each split's BN (as its affine map) writes straight into the output."""
        out = spx[0].new_empty(spx[0].size(0), self.width * self.scale, spx[0].size(2))
        sp = spx[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            h = torch.relu_(conv(sp if i == 0 else sp + spx[i]))
            sp = out[:, i * self.width : (i + 1) * self.width]
            scale, shift = bn_affine(bn)
            torch.mul(h, scale.unsqueeze(1), out=sp).add_(shift.unsqueeze(1))
            if mask is not None:
                sp.mul_(mask)
        if self.scale != 1:
            out[:, -self.width :] = spx[-1]
        return out


class SEConnect(nn.Module):
    """SE gate from the masked time mean: ``sigmoid(linear2(relu(linear1(mean))))``.

    Shapes: ``x (B, C, T)``, ``weights (B, T, 1)`` (``mask / count``) or None -> ``(B, C, 1)``.
    """

    def __init__(self, channels: int, bottleneck: int = 128) -> None:
        super().__init__()
        self.linear1 = nn.Linear(channels, bottleneck)
        self.linear2 = nn.Linear(bottleneck, channels)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        mean = x.mean(2) if weights is None else torch.bmm(x, weights).squeeze(2)
        return torch.sigmoid(self.linear2(F.relu(self.linear1(mean)))).unsqueeze(2)


class SERes2Block(nn.Module):
    """``x + SE(1x1 -> Res2 -> 1x1)(x)``; keys ``se_res2block.{0,1,2,3}.*`` as WeSpeaker's
    Sequential. Shapes: ``(B, C, T) -> (B, C, T)``."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int, se_channels: int) -> None:
        super().__init__()
        self.se_res2block = nn.Sequential(
            Conv1dReluBn(channels, channels),
            Res2Conv1dReluBn(channels, kernel_size, dilation, scale),
            Conv1dReluBn(channels, channels),
            SEConnect(channels, se_channels),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, weights: torch.Tensor | None,
                out: torch.Tensor | None = None) -> torch.Tensor:
        """``out``: inference only, a view (of the MFA input) the result is written into."""
        conv1, res2, conv2, se = self.se_res2block
        y = conv2(res2(conv1(x), mask))
        if out is None:
            return torch.addcmul(x, y, se(y, weights))  # residual + gated output in one pass
        return torch.addcmul(x, y, se(y, weights), out=out)


class AttentiveStatsPoolWeSpeaker(nn.Module):
    """WeSpeaker's ASTP: attention ``softmax_t(linear2(tanh(linear1(h))))`` per channel, where
    ``h`` is the frames or, with global context, the frames with the utterance mean and
    ``sqrt(unbiased var + 1e-7)`` appended; returns the weighted mean and
    ``sqrt(max(var, 1e-7))``. The context enters ``linear1`` as one matrix-vector product per
    utterance (its weight split by input block), not as tiled channels.

    Shapes: ``x (B, C, T)``, ``mask (B, 1, T) | None``, ``lengths (B,) | None`` -> ``(B, 2 C)``.
    """

    def __init__(self, in_dim: int, bottleneck: int = 128, global_context: bool = False) -> None:
        super().__init__()
        self.global_context = global_context
        self.linear1 = nn.Conv1d(in_dim * (3 if global_context else 1), bottleneck, 1)
        self.linear2 = nn.Conv1d(bottleneck, in_dim, 1)

    def _context(self, x: torch.Tensor, mask: torch.Tensor | None, lengths: torch.Tensor | None) -> torch.Tensor:
        """``linear1``'s bias plus its response to the utterance statistics, ``(B, A, 1)``."""
        w = self.linear1.weight.squeeze(2)
        c = x.size(1)
        if not self.global_context:
            return self.linear1.bias.view(1, -1, 1)
        if mask is None:
            # two passes (mean, then squared deviations): ~6x faster than var_mean's Welford
            # kernel on one thread, same values to rounding
            mean = x.mean(2, keepdim=True)
            dev = x - mean
            dev = dev.square_() if fast_inference() else dev.square()
            var, mean = dev.sum(2) / (x.size(2) - 1), mean.squeeze(2)
        else:
            n = lengths.to(x.dtype).view(-1, 1)
            mean = (x * mask).sum(2) / n
            var = ((x - mean.unsqueeze(2)).pow(2) * mask).sum(2) / (n - 1).clamp(min=1)
        std = (var + 1e-7).sqrt()
        ctx = mean @ w[:, c : 2 * c].t() + std @ w[:, 2 * c :].t() + self.linear1.bias
        return ctx.unsqueeze(2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, lengths: torch.Tensor | None) -> torch.Tensor:
        w = self.linear1.weight[:, : x.size(1)]
        alpha = self.linear2(torch.tanh(F.conv1d(x, w) + self._context(x, mask, lengths)))
        if mask is not None:
            alpha = alpha.masked_fill(mask == 0, float("-inf"))
        if fast_inference():  # the softmax and both moments in place: no more (B, C, T) buffers
            alpha = alpha.sub_(alpha.amax(2, keepdim=True)).exp_()
            total = alpha.sum(2)
            mean = alpha.mul_(x).sum(2) / total
            var = alpha.mul_(x).sum(2) / total - mean * mean
        else:
            weighted = alpha.softmax(dim=2) * x
            mean = weighted.sum(2)
            var = (weighted * x).sum(2) - mean * mean  # WeSpeaker's one-pass form
        return torch.cat([mean, var.clamp(min=1e-7).sqrt()], dim=1)


class EcapaTdnnWeSpeaker(nn.Module):
    """ECAPA-TDNN, WeSpeaker layout (see the module doc).

    ``layer1`` conv k5 -> ``layer2..4`` SE-Res2Blocks (k3, dilations 2, 3, 4) -> ``conv``
    (1x1, MFA over blocks 2-4) -> ReLU -> ``pool`` (ASTP) -> ``bn`` -> ``linear`` (-> ``bn2``).

    Parameters
    ----------
    feat_dim, embed_dim : int
    channels : int
        Width of the blocks (512 or 1024).
    mfa_channels : int
        Output of the MFA conv (WeSpeaker fixes it at 1536).
    global_context : bool
        The ``GLOB`` variants: attention sees the utterance mean and std.
    scale, se_channels, attention_channels : int
    emb_bn : bool
        BatchNorm on the embedding (``bn2``).

    Shapes: ``forward(feats (B, T, F), lengths (B,) | None) -> (B, embed_dim)``;
    ``forward_frames(...) -> (B, mfa_channels, T)`` (after the MFA ReLU, what is pooled).
    """

    def __init__(
        self, feat_dim: int = 80, embed_dim: int = 192, channels: int = 512, mfa_channels: int = 1536,
        global_context: bool = False, scale: int = 8, se_channels: int = 128,
        attention_channels: int = 128, emb_bn: bool = False,
    ) -> None:
        super().__init__()
        self.feat_dim, self.embed_dim = feat_dim, embed_dim
        self.frame_stride = 1  # forward_frames keeps every frame
        self.layer1 = Conv1dReluBn(feat_dim, channels, kernel_size=5)
        self.layer2 = SERes2Block(channels, 3, 2, scale, se_channels)
        self.layer3 = SERes2Block(channels, 3, 3, scale, se_channels)
        self.layer4 = SERes2Block(channels, 3, 4, scale, se_channels)
        self.conv = nn.Conv1d(3 * channels, mfa_channels, 1)
        self.pool = AttentiveStatsPoolWeSpeaker(mfa_channels, attention_channels, global_context)
        self.bn = nn.BatchNorm1d(2 * mfa_channels)
        self.linear = nn.Linear(2 * mfa_channels, embed_dim)
        self.bn2 = nn.BatchNorm1d(embed_dim) if emb_bn else nn.Identity()

    def _frames(self, feats: torch.Tensor, lengths: torch.Tensor | None):
        if feats.dim() != 3 or feats.size(2) != self.feat_dim:
            raise ValueError(f"feats must be (B, T, {self.feat_dim}), got {tuple(feats.shape)}")
        batch, frames = feats.shape[:2]
        mask = weights = None
        if lengths is not None:
            lengths = padded_lengths(check_lengths(lengths, batch, frames).to(feats.device), frames)
        if lengths is not None:
            mask = time_mask(lengths, frames, feats.dtype).unsqueeze(1)
            weights = (mask / lengths.to(feats.dtype).view(-1, 1, 1)).transpose(1, 2)
        x = self.layer1(_mask(feats.transpose(1, 2), mask))
        blocks = (self.layer2, self.layer3, self.layer4)
        if fast_inference():  # blocks write into the MFA input: no concatenation
            c = x.size(1)
            cat = x.new_empty(batch, len(blocks) * c, frames)
            for k, block in enumerate(blocks):
                x = block(x, mask, weights, out=cat[:, k * c : (k + 1) * c])
        else:
            outs = []
            for block in blocks:
                x = block(x, mask, weights)
                outs.append(x)
            cat = torch.cat(outs, dim=1)
        return torch.relu_(self.conv(cat)), mask, lengths

    def forward_frames(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Frame-level map that is pooled, ``(B, mfa_channels, T)``."""
        return self._frames(feats, lengths)[0]

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings ``(B, embed_dim)`` of ``feats (B, T, F)`` with ``lengths (B,)`` valid frames."""
        out, mask, lengths = self._frames(feats, lengths)
        return self._pooled(out, mask, lengths)

    def forward_pooled(self, frames: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """What follows :meth:`forward_frames`: ``frames (B, C, T)`` with ``lengths (B,)`` valid
        frames -> ``(B, embed_dim)`` (attentive statistics pooling, BN, linear, BN)."""
        mask = None if lengths is None else time_mask(lengths, frames.size(2), frames.dtype).unsqueeze(1)
        return self._pooled(frames, mask, lengths)

    def _pooled(self, out: torch.Tensor, mask: torch.Tensor | None, lengths: torch.Tensor | None) -> torch.Tensor:
        return self.bn2(self.linear(self.bn(self.pool(out, mask, lengths))))


def _ecapa(overrides: dict, **defaults) -> EcapaTdnnWeSpeaker:
    return build(EcapaTdnnWeSpeaker, defaults, overrides)


@register_model
def ecapa_tdnn_ws_c512(**overrides) -> EcapaTdnnWeSpeaker:
    """WeSpeaker ``ECAPA_TDNN_c512``: 5,797,504 parameters."""
    return _ecapa(overrides, channels=512)


@register_model
def ecapa_tdnn_ws_c1024(**overrides) -> EcapaTdnnWeSpeaker:
    """WeSpeaker ``ECAPA_TDNN_c1024``: 14,263,872 parameters."""
    return _ecapa(overrides, channels=1024)


@register_model
def ecapa_tdnn_ws_glob_c512(**overrides) -> EcapaTdnnWeSpeaker:
    """WeSpeaker ``ECAPA_TDNN_GLOB_c512``: 6,190,720 parameters."""
    return _ecapa(overrides, channels=512, global_context=True)


@register_model
def ecapa_tdnn_ws_glob_c1024(**overrides) -> EcapaTdnnWeSpeaker:
    """WeSpeaker ``ECAPA_TDNN_GLOB_c1024`` (the published 14.65M model): 14,657,088 parameters."""
    return _ecapa(overrides, channels=1024, global_context=True)


@register_model
def ecapa_tdnn_ws_tiny(**overrides) -> EcapaTdnnWeSpeaker:
    """Tiny WeSpeaker-layout ECAPA (C=32, MFA 96, scale 4, global context): tests."""
    return _ecapa(overrides, channels=32, mfa_channels=96, global_context=True, scale=4, se_channels=16,
                  attention_channels=16, embed_dim=64)
