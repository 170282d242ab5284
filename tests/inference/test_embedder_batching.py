"""How the Embedder groups segments into network batches (lengths within 10 % of each other)."""

from __future__ import annotations

import torch

from r2n_audio.data.bucketing import similar_length_runs
from r2n_audio.inference.embedder import Embedder
from r2n_audio.models import create_model


def test_runs_cut_where_the_length_passes_ten_percent_of_the_runs_shortest():
    # hand-worked: 105 <= 1.1 * 100 < 112; 112 * 1.1 = 123.2 >= 120; 300 alone
    sizes = [100, 105, 112, 120, 300]
    assert list(similar_length_runs([0, 1, 2, 3, 4], sizes)) == [[0, 1], [2, 3], [4]]
    assert list(similar_length_runs([], sizes)) == []


def test_each_network_batch_holds_similar_lengths_and_embeddings_do_not_change(monkeypatch):
    from r2n_audio.features.frontend import build_frontend

    torch.manual_seed(0)
    model = create_model("ecapa_tdnn_tiny").eval()
    emb = Embedder(model, build_frontend({"type": "kaldi", "num_mel_bins": 80}), device="cpu")
    g = torch.Generator().manual_seed(1)
    seconds = [1.0, 1.05, 1.5, 2.9, 3.0]
    waves = [0.1 * torch.randn(int(s * 16000), generator=g) for s in seconds]
    calls = []
    forward = Embedder._forward
    monkeypatch.setattr(Embedder, "_forward",
                        lambda self, w: calls.append([x.numel() for x in w]) or forward(self, w))
    batched, problems = emb._embed_waves(waves, batch_seconds=60.0)
    assert not problems
    assert calls == [[16000, 16800], [24000], [46400, 48000]]
    alone = torch.cat([emb._embed_waves([w], 60.0)[0] for w in waves])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)
