"""Score-normalisation statistics from training-length random crops: the mean and the AS-Norm
cohort, made the way the published VoxCeleb numbers were.

WeSpeaker subtracts the mean of the vox2_dev embeddings before cosine scoring and takes the
5,994 vox2_dev speaker means as the AS-Norm cohort; its ``extract_vox.sh`` embeds vox2_dev with
batch size 16, which its ``extract.py`` turns into one random crop of the training length
(``num_frms``, 2 s) per utterance, while the test utterances are embedded whole. The statistics
therefore describe short crops, not whole utterances. :func:`crop_embeddings` does the same here
through :class:`~r2n_audio.inference.embedder.Embedder` (fp32, the bundle's front-end), and
:func:`normalisation_statistics` turns them into the mean and the cohort that ``r2n-audio score
--mean --cohort`` reads::

    python -m r2n_audio.training.cohort --model exp/voxceleb/resnet34/model.pt \\
        --data data/voxceleb/vox2_dev --crop-seconds 2 \\
        --mean exp/voxceleb/resnet34/vox2_mean.npy --cohort exp/voxceleb/resnet34/vox2_cohort.npy
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

__all__ = ["crop_embeddings", "normalisation_statistics", "main"]


def crop_embeddings(embedder, wavs: Mapping[str, str | os.PathLike], crop_seconds: float = 2.0,
                    seed: int = 0, batch_size: int = 64, workers: int = 4) -> dict[str, np.ndarray]:
    """One embedding per utterance, of one random ``crop_seconds`` crop of it.

    Parameters
    ----------
    embedder : Embedder
        The model (in fp32, as scores are reported).
    wavs : mapping of str to path
        Utterance key -> audio file.
    crop_seconds : float
        Crop length, the training crop length of the model (2 s in WeSpeaker's recipe).
        Shorter utterances are tiled to it, as in training.
    seed : int
        The crop of utterance ``i`` (in sorted key order) is drawn from ``(seed, i)``: the
        same crops whatever ``batch_size`` and ``workers``.
    batch_size : int
        Crops per forward pass.
    workers : int
        Threads reading audio.

    Returns
    -------
    dict of str to (D,) np.ndarray
        Float32 embeddings, after the bundle's own normalisation (as ``r2n-audio embed``).
    """
    from r2n_audio.audio import load_random_segment
    from r2n_audio.data.datasets import repeat_pad

    length = int(round(crop_seconds * embedder.sample_rate))
    keys = sorted(wavs)

    def crop(i: int) -> torch.Tensor:
        rng = np.random.default_rng([seed, i])
        wave = load_random_segment(wavs[keys[i]], length, embedder.sample_rate, rng)
        return repeat_pad(wave, length)

    out: dict[str, np.ndarray] = {}
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(keys), batch_size):
            indices = range(start, min(start + batch_size, len(keys)))
            batch = torch.stack(list(pool.map(crop, indices)))
            out.update(zip((keys[i] for i in indices), embedder.embed_batch(batch)))
    return out


def normalisation_statistics(embeddings: Mapping[str, np.ndarray],
                             utt2spk: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """The mean ``(D,)`` of all embeddings and the cohort ``(S, D)`` of speaker means.

    Both raw (not length-normalised), as ``r2n-audio score`` expects: it subtracts the mean
    from the test embeddings and the cohort alike before normalising them.
    """
    from r2n_audio.training.recipe import speaker_means

    mean = np.mean(np.stack(list(embeddings.values())).astype(np.float64), axis=0)
    return mean.astype(np.float32), speaker_means(embeddings, utt2spk).astype(np.float32)


def _save(path: str, array: np.ndarray) -> None:
    from r2n_audio.atomic import atomic_path

    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model bundle (.pt)")
    parser.add_argument("--data", required=True, help="data dir with wav.scp and utt2spk")
    parser.add_argument("--crop-seconds", type=float, default=2.0,
                        help="crop length: the model's training crops (default 2.0)")
    parser.add_argument("--mean", required=True, help="mean embedding to write (.npy)")
    parser.add_argument("--cohort", required=True, help="speaker-mean cohort to write (.npy)")
    parser.add_argument("--seed", type=int, default=0, help="crop seed (default 0)")
    parser.add_argument("--batch-size", type=int, default=64, help="crops per batch (64)")
    parser.add_argument("--workers", type=int, default=4, help="reading threads (4)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    args = parser.parse_args(argv)
    from r2n_audio.data.manifests import read_utt2spk, read_wav_scp
    from r2n_audio.errors import R2NError
    from r2n_audio.inference.embedder import Embedder

    try:
        if not args.crop_seconds > 0 or args.batch_size < 1:
            raise R2NError("--crop-seconds must be > 0 and --batch-size >= 1")
        utt2spk = read_utt2spk(Path(args.data) / "utt2spk")
        wavs = {k: v for k, v in read_wav_scp(Path(args.data) / "wav.scp").items()
                if k in utt2spk}
        embedder = Embedder.from_pretrained(args.model, device=args.device)
        embeddings = crop_embeddings(embedder, wavs, args.crop_seconds, args.seed,
                                     args.batch_size, args.workers)
        mean, cohort = normalisation_statistics(embeddings, utt2spk)
        _save(args.mean, mean)
        _save(args.cohort, cohort)
    except R2NError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(embeddings)} crops of {args.crop_seconds:g} s: mean -> {args.mean}, "
          f"cohort of {len(cohort)} speakers -> {args.cohort}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
