"""Speaker diarization ("who spoke when") on r2n-audio embeddings.

``Diarizer.from_pretrained(bundle)(path)`` runs speech activity detection (:mod:`.vad`),
sliding windows embedded in batches by :class:`~r2n_audio.inference.Embedder`
(:mod:`.segments`), spectral or agglomerative clustering (:mod:`.clustering`) and the vote back
to a timeline; :mod:`.rttm` reads and writes RTTM files and :mod:`.der` scores them with
pyannote.metrics. Nothing here imports Lightning.
"""

from r2n_audio.diarization.segments import Turn

__all__ = ["Turn"]
