"""1-D SE-Res2Net: the Res2Net convolution over time, the SE-Res2Block and ECAPA-TDNN.

ECAPA-TDNN: Desplanques, Thienpondt and Demuynck, "ECAPA-TDNN: Emphasized Channel Attention,
Propagation and Aggregation in TDNN Based Speaker Verification", Interspeech 2020
(arXiv:2005.07143). Built module for module as SpeechBrain 1.1.2's
``speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN`` so its state_dict loads here with
``strict=True`` and gives the same embeddings at batch size 1, with two differences:

- ``lengths`` are valid frame counts, and padding is handled exactly: statistics, SE means and
  attention use the valid frames only, and the reflect "same" padding of every dilated
  convolution reflects at each utterance's own last frame (an index gather built once per
  forward and dilation). A padded batch therefore equals each utterance alone (SpeechBrain's
  does not: its issue #1374).
- Inputs shorter than the receptive padding (5 frames for the standard sizes) raise
  :class:`~r2n_audio.errors.ModelError` instead of crashing inside ``F.pad``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from r2n_audio.models.layers import BatchNorm1dNested, Conv1dNested, TDNNBlock, check_lengths, reflect_index, time_mask
from r2n_audio.models.pooling import AttentiveStatisticsPooling
from r2n_audio.models.registry import build, register_model

__all__ = ["Res2Conv1d", "SEBlock1d", "SERes2Block", "EcapaTdnn"]

_PadIndex = dict[int, torch.Tensor]


class Res2Conv1d(nn.Module):
    """Res2Net convolution over time (Gao et al., TPAMI 2021), ECAPA flavour.

    Channels are chunked into ``scale`` groups; ``y_0 = x_0`` (the paper's identity split),
    ``y_1 = f_1(x_1)``, ``y_i = f_i(x_i + y_{i-1})`` with ``f_i`` a kernel-``k`` TDNN block of
    dilation ``d``; the outputs are concatenated once. Shapes: ``(B, C, T) -> (B, C, T)``.
    """

    def __init__(self, channels: int, scale: int = 8, kernel_size: int = 3, dilation: int = 1) -> None:
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels ({channels}) must be divisible by scale ({scale})")
        width = channels // scale
        self.scale = scale
        self.blocks = nn.ModuleList(TDNNBlock(width, width, kernel_size, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor, pad_index: _PadIndex | None = None) -> torch.Tensor:
        xs = x.chunk(self.scale, dim=1)
        ys = [xs[0]]
        y = xs[1]
        for i, block in enumerate(self.blocks):
            y = block(y if i == 0 else xs[i + 1] + y, pad_index)
            ys.append(y)
        return torch.cat(ys, dim=1)


class SEBlock1d(nn.Module):
    """Squeeze-excitation over time: masked mean, 1x1 ``C -> S``, ReLU, ``S -> C``, sigmoid.

    Shapes: ``x (B, C, T)``, ``mask (B, 1, T)`` (1 on valid frames), ``n (B, 1, 1)`` valid
    counts -> gates ``(B, C, 1)`` (the caller multiplies, fused with its residual add).
    """

    def __init__(self, channels: int, se_channels: int = 128) -> None:
        super().__init__()
        self.conv1 = Conv1dNested(channels, se_channels, 1)
        self.conv2 = Conv1dNested(se_channels, channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        s = torch.bmm(x, mask.transpose(1, 2)) / n  # masked sum without a (B, C, T) product
        return torch.sigmoid(self.conv2(torch.relu(self.conv1(s))))


class SERes2Block(nn.Module):
    """ECAPA's SE-Res2Block: 1x1 TDNN -> Res2Conv1d -> 1x1 TDNN -> SE, plus the residual.

    Shapes: ``(B, in_channels, T) -> (B, out_channels, T)``; a 1x1 ``shortcut`` conv exists only
    when the channel count changes (as in SpeechBrain).
    """

    def __init__(
        self, in_channels: int, out_channels: int, scale: int = 8, se_channels: int = 128,
        kernel_size: int = 3, dilation: int = 1,
    ) -> None:
        super().__init__()
        self.tdnn1 = TDNNBlock(in_channels, out_channels, 1, 1)
        self.res2net_block = Res2Conv1d(out_channels, scale, kernel_size, dilation)
        self.tdnn2 = TDNNBlock(out_channels, out_channels, 1, 1)
        self.se_block = SEBlock1d(out_channels, se_channels)
        self.shortcut = Conv1dNested(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, pad_index: _PadIndex, mask: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        x = self.tdnn2(self.res2net_block(self.tdnn1(x), pad_index))
        return torch.addcmul(residual, x, self.se_block(x, mask, n))


class EcapaTdnn(nn.Module):
    """ECAPA-TDNN speaker embedding network (SpeechBrain 1.1.2 layout; see the module doc).

    TDNN(k5) -> 3 SE-Res2Blocks (k3, dilations 2, 3, 4) -> MFA (concat of the three blocks,
    1x1 TDNN) -> attentive statistics pooling -> BatchNorm -> 1x1 conv to ``embed_dim``.
    Parameters (input 80, embedding 192): channels ``[512]*4+[1536]`` 6,194,048;
    ``[1024]*4+[1536]`` 14,660,416; ``[1024]*4+[3072]`` 20,767,552.

    Parameters
    ----------
    feat_dim : int
        Input feature size ``F`` (SpeechBrain's ``input_size``).
    embed_dim : int
        Embedding size (SpeechBrain's ``lin_neurons``).
    channels, kernel_sizes, dilations : sequence of int
        Per layer: the first TDNN, the SE-Res2Blocks, the MFA layer.
    attention_channels, res2net_scale, se_channels : int
    global_context : bool
        Attention sees the utterance mean and std.

    Shapes: ``forward(feats (B, T, F), lengths (B,) | None) -> (B, embed_dim)``;
    ``forward_frames(...) -> (B, channels[-1], T)``.
    """

    def __init__(
        self, feat_dim: int = 80, embed_dim: int = 192,
        channels: Sequence[int] = (512, 512, 512, 512, 1536),
        kernel_sizes: Sequence[int] = (5, 3, 3, 3, 1), dilations: Sequence[int] = (1, 2, 3, 4, 1),
        attention_channels: int = 128, res2net_scale: int = 8, se_channels: int = 128,
        global_context: bool = True,
    ) -> None:
        super().__init__()
        if not len(channels) == len(kernel_sizes) == len(dilations) >= 3:
            raise ValueError("channels, kernel_sizes and dilations need the same length (>= 3)")
        self.feat_dim, self.embed_dim = feat_dim, embed_dim
        self.frame_stride = 1  # forward_frames keeps every frame
        self.blocks = nn.ModuleList([TDNNBlock(feat_dim, channels[0], kernel_sizes[0], dilations[0])])
        for i in range(1, len(channels) - 1):
            self.blocks.append(SERes2Block(
                channels[i - 1], channels[i], res2net_scale, se_channels, kernel_sizes[i], dilations[i]
            ))
        self.mfa = TDNNBlock(sum(channels[1:-1]), channels[-1], kernel_sizes[-1], dilations[-1])
        self.asp = AttentiveStatisticsPooling(channels[-1], attention_channels, global_context)
        self.asp_bn = BatchNorm1dNested(channels[-1] * 2)
        self.fc = Conv1dNested(channels[-1] * 2, embed_dim, 1)
        self._pads = sorted({d * (k - 1) // 2 for k, d in zip(kernel_sizes, dilations)} - {0})

    @property
    def min_frames(self) -> int:
        """Shortest input accepted: reflect padding needs more frames than it pads."""
        return (max(self._pads) if self._pads else 0) + 1

    def _frames(self, feats: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if feats.dim() != 3 or feats.size(2) != self.feat_dim:
            raise ValueError(f"feats must be (B, T, {self.feat_dim}), got {tuple(feats.shape)}")
        batch, frames = feats.shape[:2]
        lengths = check_lengths(lengths, batch, frames, self.min_frames).to(feats.device)
        pad_index = {p: reflect_index(lengths, frames, p) for p in self._pads}
        mask = time_mask(lengths, frames, feats.dtype).unsqueeze(1)
        n = lengths.to(feats.dtype).view(-1, 1, 1)
        x = self.blocks[0](feats.transpose(1, 2), pad_index)
        outs = []
        for block in self.blocks[1:]:
            x = block(x, pad_index, mask, n)
            outs.append(x)
        return self.mfa(torch.cat(outs, dim=1), pad_index), lengths

    def forward_frames(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Frame-level output of the MFA layer, ``(B, channels[-1], T)``."""
        return self._frames(feats, lengths)[0]

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings ``(B, embed_dim)`` of ``feats (B, T, F)`` with ``lengths (B,)`` valid frames."""
        return self.forward_pooled(*self._frames(feats, lengths))

    def shared_pooling(self, frames: torch.Tensor) -> torch.Tensor | None:
        """Per-frame work of the pooling that windows cut from ``frames (B, C, T)`` can share:
        the attention's frame projection ``(B, A, T)`` (None without global context)."""
        return self.asp.frame_projection(frames)

    def forward_pooled(self, frames: torch.Tensor, lengths: torch.Tensor | None = None,
                       shared: torch.Tensor | None = None) -> torch.Tensor:
        """What follows :meth:`forward_frames`: ``frames (B, C, T)`` with ``lengths (B,)`` valid
        frames -> ``(B, embed_dim)`` (attentive statistics pooling, BatchNorm, 1x1 conv);
        ``shared (B, A, T)``: the same spans of :meth:`shared_pooling` (same result)."""
        stats = self.asp_bn(self.asp(frames, lengths, shared))
        return self.fc(stats.unsqueeze(2)).squeeze(2)


def _ecapa(overrides: dict, channels: Sequence[int], **defaults) -> EcapaTdnn:
    return build(EcapaTdnn, dict(channels=tuple(channels), **defaults), overrides)


@register_model
def ecapa_tdnn_c512(**overrides) -> EcapaTdnn:
    """ECAPA-TDNN C=512 (paper's small model): 6,194,048 parameters."""
    return _ecapa(overrides, [512] * 4 + [1536])


@register_model
def ecapa_tdnn_c1024(**overrides) -> EcapaTdnn:
    """ECAPA-TDNN C=1024 (the paper's 14.7M model): 14,660,416 parameters."""
    return _ecapa(overrides, [1024] * 4 + [1536])


@register_model
def ecapa_tdnn_c1024_mfa3072(**overrides) -> EcapaTdnn:
    """ECAPA-TDNN of SpeechBrain's ``spkrec-ecapa-voxceleb`` (MFA 3072): 20,767,552 parameters."""
    return _ecapa(overrides, [1024] * 4 + [3072])


@register_model
def ecapa_tdnn_c256(**overrides) -> EcapaTdnn:
    """Small ECAPA-TDNN C=256, MFA 768, SE and attention 64: for CPU training."""
    return _ecapa(overrides, [256] * 4 + [768], se_channels=64, attention_channels=64)


@register_model
def ecapa_tdnn_c128(**overrides) -> EcapaTdnn:
    """Small ECAPA-TDNN C=128, MFA 384, SE and attention 64: the mini recipe's size."""
    return _ecapa(overrides, [128] * 4 + [384], se_channels=64, attention_channels=64)


@register_model
def ecapa_tdnn_tiny(**overrides) -> EcapaTdnn:
    """Tiny ECAPA-TDNN C=32, MFA 96, scale 4, embedding 64: for tests."""
    return _ecapa(overrides, [32] * 4 + [96], se_channels=16, attention_channels=16,
                  res2net_scale=4, embed_dim=64)
