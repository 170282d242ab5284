"""The mini recipe (what `make demo` runs): corpus -> train -> embed -> score -> report.

    python recipes/mini/run.py                       # defaults: data/mini, exp/mini
    python recipes/mini/run.py --config recipes/mini/conf/default.yaml -- --trainer.max_time=00:00:02:00

1. makes the synthetic corpus in ``--data`` if it is not there (``make_corpus``);
2. measures the no-training baseline EER (log-mel statistics, cosine);
3. trains the model of ``--config`` (LightningCLI YAML; overrides after ``--``);
4. embeds the held-out speakers and a few utterances per training speaker;
5. scores the trial list: cosine after subtracting the mean training embedding, then AS-Norm
   with the training speakers as cohort; writes ``results.json``, ``det.png``, the test
   embeddings and an export bundle (``model.pt``) to ``--exp``, and prints a table;
6. diarizes the built-in conversation set (``--data``/conversations, made if missing) with the
   exported model and adds its DER to ``results.json`` and the printout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parent / "conf" / "default.yaml"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/mini", help="corpus folder (made if missing)")
    parser.add_argument("--exp", default="exp/mini", help="output folder")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="training YAML")
    # Many speakers with few utterances each: what a speaker embedding generalises from is
    # the number of voices (500 x 8 trains to half the EER of 200 x 20 in the same time).
    parser.add_argument("--speakers", type=int, default=500, help="training speakers of a new corpus")
    parser.add_argument("--test-speakers", type=int, default=40, help="held-out speakers of a new corpus")
    parser.add_argument("--utts", type=int, default=8, help="utterances per speaker of a new corpus")
    parser.add_argument("--cohort-utts", type=int, default=5, help="utterances per training speaker embedded for the mean and the AS-Norm cohort")
    parser.add_argument("--top-n", type=int, default=100, help="AS-Norm top-N cohort scores")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.overrides = argv[split + 1:]
    return args


def make_corpus_if_missing(args) -> float:
    """Seconds spent making the corpus (0 when an up-to-date one was already there).

    A corpus from an older generator version is remade: its voices are not what this code
    trains and reports on. A current one made with other sizes is kept (it may be on purpose).
    """
    from r2n_audio.data.synthetic import GENERATOR_VERSION, make_corpus

    data = Path(args.data)
    if (data / "corpus.json").is_file() and (data / "trials.txt").is_file():
        made = json.loads((data / "corpus.json").read_text())
        wanted = (args.speakers, args.test_speakers, args.utts)
        found = (made.get("n_train_speakers"), made.get("n_test_speakers"),
                 made.get("utts_per_speaker"))
        if made.get("version") == GENERATOR_VERSION:
            note = "" if found == wanted else (
                f"; note: made with {found[0]}+{found[1]} speakers x {found[2]}, not "
                f"{wanted[0]}+{wanted[1]} x {wanted[2]}")
            print(f"corpus: {data} (exists{note})")
            return 0.0
        print(f"corpus: {data} was made by generator version {made.get('version')}, "
              f"this is {GENERATOR_VERSION}: remaking it")
    print(f"corpus: making {data} ({args.speakers}+{args.test_speakers} speakers x {args.utts})")
    start = time.perf_counter()
    make_corpus(data, n_train_speakers=args.speakers, n_test_speakers=args.test_speakers,
                utts_per_speaker=args.utts, progress=not args.quiet)
    return time.perf_counter() - start


def train(args):
    """Fit the configured model; returns (module, trainer, seconds)."""
    from r2n_audio.training.cli import main as cli_main

    # default_root_dir: LightningCLI saves the merged config there (exp/mini/config.yaml).
    Path(args.exp).mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    # The corpus's synthetic MUSAN and RIR folders stand in for the real ones (see noises.py).
    augment = [f"--data.{key}={data / folder}" for key, folder
               in (("musan_dir", "musan"), ("rir_dir", "rirs")) if (data / folder).is_dir()]
    cli_args = ["--config", args.config, f"--data.train_dir={data / 'train'}", *augment,
                f"--trainer.default_root_dir={args.exp}",
                *([] if not args.quiet else ["--trainer.enable_progress_bar=false"]),
                *args.overrides]
    cli = cli_main(cli_args, run=False)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    return cli.model, cli.trainer, time.perf_counter() - start


def evaluate(args, module):
    """Embed, score and measure; returns (metrics dict, det systems, embeddings, mean)."""
    import numpy as np
    import torch

    from r2n_audio.data.manifests import read_trials, read_utt2spk, read_wav_scp
    from r2n_audio.training.recipe import (embed_utterances, score_and_measure, speaker_means,
                                           subsample_per_speaker)

    data, device = Path(args.data), "cuda" if torch.cuda.is_available() else "cpu"
    module.to(device)
    test = embed_utterances(module, read_wav_scp(data / "test" / "wav.scp"), device,
                            progress=not args.quiet)
    utt2spk = read_utt2spk(data / "train" / "utt2spk")
    train_wavs = read_wav_scp(data / "train" / "wav.scp")
    keys = subsample_per_speaker({k: utt2spk[k] for k in train_wavs}, args.cohort_utts)
    train = embed_utterances(module, {k: train_wavs[k] for k in keys}, device,
                             progress=not args.quiet)
    mean = np.mean(np.stack(list(train.values())), axis=0)
    cohort = speaker_means(train, utt2spk)
    trials = read_trials(data / "trials.txt")
    plain, s0, labels = score_and_measure(trials, test, mean=mean)
    normed, s1, _ = score_and_measure(trials, test, mean=mean, cohort=cohort, top_n=args.top_n)
    for metrics in (plain, normed):
        metrics["eer"] *= 100.0  # percent in reports
    systems = {"cosine": (s0, labels), "cosine + AS-Norm": (s1, labels)}
    return {"plain": plain, "as_norm": normed}, systems, test, mean


def write_outputs(args, module, results, systems, test_embeddings, mean) -> None:
    import torch

    from r2n_audio.atomic import atomic_write_text
    from r2n_audio.data.embeddings import save_embeddings
    from r2n_audio.inference.bundle import save_bundle
    from r2n_audio.scoring.plot import plot_det

    exp = Path(args.exp)
    exp.mkdir(parents=True, exist_ok=True)
    atomic_write_text(exp / "results.json", json.dumps(results, indent=1) + "\n")
    plot_det(exp / "det.png", systems, title="mini corpus, held-out speakers")
    save_embeddings(exp / "test_embeddings.npz", test_embeddings)
    # The EER point of plain cosine, and where it was set: `verify` prints that with every
    # decision, since it says little about other audio (real recordings especially).
    meta = {"recipe": "mini", "results": results,
            "threshold": results["threshold_eer_no_asnorm"],
            "threshold_source": "synthetic voices: mini corpus (EER point of plain cosine on "
                                "its held-out speakers)"}
    save_bundle(module.cpu().bundle(embedding_mean=torch.from_numpy(mean), meta=meta),
                exp / "model.pt")


def print_table(results) -> None:
    rows = [("system", "EER %", "minDCF 0.01", "minDCF 0.05"),
            ("log-mel stats baseline (no training)", f"{results['baseline_eer']:.2f}", "", ""),
            (f"{results['model']} cosine", f"{results['eer_no_asnorm']:.2f}",
             f"{results['min_dcf_0.01_no_asnorm']:.3f}", f"{results['min_dcf_0.05_no_asnorm']:.3f}"),
            (f"{results['model']} + AS-Norm", f"{results['eer']:.2f}",
             f"{results['min_dcf_0.01']:.3f}", f"{results['min_dcf_0.05']:.3f}")]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    print(f"params {results['params']:,}; seconds: corpus {results['corpus_seconds']:.0f} "
          f"(generation {results['corpus_generation_seconds'] or 0:.0f}), train "
          f"{results['train_seconds']:.0f} ({results['steps']} steps), total "
          f"{results['total_seconds']:.0f}")


def diarize_conversations(args) -> dict:
    """Diarization stage: the exported model on the built-in conversation set (made if missing).

    10 recordings of ~60 s with 2-6 of the held-out speakers, no overlap (a corpus with fewer
    than 40 held-out speakers, as in the smoke test, gets 2 recordings of ~15 s); Silero VAD,
    eigengap spectral clustering, DER by pyannote.metrics with a 0.25 s collar.
    """
    from r2n_audio.data.synthetic.conversations import make_conversations
    from r2n_audio.diarization.pipeline import Diarizer, score_folder

    data, folder = Path(args.data), Path(args.data) / "conversations"
    n_test = json.loads((data / "corpus.json").read_text())["n_test_speakers"]
    if not (folder / "conversations.json").is_file():
        full = n_test >= 40
        make_conversations(folder, n_conversations=10 if full else 2,
                           seconds=60.0 if full else 15.0, n_test_speakers=n_test,
                           max_speakers=min(6, n_test), progress=not args.quiet)
    diarizer = Diarizer.from_pretrained(Path(args.exp) / "model.pt")
    report = score_folder(diarizer, folder)
    return {"der": 100 * report["total"]["der"],
            **{k: 100 * report["total"][k] for k in ("missed", "false_alarm", "confusion")},
            "recordings": len(report["files"]), "audio_seconds": report["audio_seconds"],
            "seconds": report["wall_seconds"], "collar": report["collar"],
            "conversations": str(folder)}


def main(argv=None) -> dict:
    start = time.perf_counter()
    args = parse_args(argv)
    corpus_seconds = make_corpus_if_missing(args)
    from r2n_audio.scoring.baseline import baseline_eer

    t = time.perf_counter()
    baseline = baseline_eer(Path(args.data) / "test", Path(args.data) / "trials.txt")
    baseline_seconds = time.perf_counter() - t
    module, trainer, train_seconds = train(args)
    t = time.perf_counter()
    metrics, systems, test_embeddings, mean = evaluate(args, module)
    results = {
        "eer": metrics["as_norm"]["eer"], "min_dcf_0.01": metrics["as_norm"]["min_dcf_0.01"],
        "min_dcf_0.05": metrics["as_norm"]["min_dcf_0.05"],
        "eer_no_asnorm": metrics["plain"]["eer"],
        "min_dcf_0.01_no_asnorm": metrics["plain"]["min_dcf_0.01"],
        "min_dcf_0.05_no_asnorm": metrics["plain"]["min_dcf_0.05"],
        # The bundle subtracts the same training mean, so `r2n-audio verify` decides with this.
        "threshold_eer_no_asnorm": metrics["plain"]["threshold_eer"],
        "baseline_eer": baseline, "model": module.backbone_name,
        "params": sum(p.numel() for p in module.backbone.parameters()),
        "trials": str(Path(args.data) / "trials.txt"), "n_trials": len(systems["cosine"][1]),
        "scoring": f"cosine after mean subtraction; AS-Norm top-{args.top_n}, cohort = training-speaker means",
        "epochs": trainer.current_epoch, "steps": trainer.global_step,
        "corpus_seconds": corpus_seconds,
        "corpus_generation_seconds": json.loads(
            (Path(args.data) / "corpus.json").read_text()).get("generation_seconds"),
        "baseline_seconds": baseline_seconds,
        "train_seconds": train_seconds, "eval_seconds": time.perf_counter() - t,
    }
    results["total_seconds"] = time.perf_counter() - start
    results = json.loads(json.dumps(results, default=float))  # plain floats (numpy scalars out)
    write_outputs(args, module, results, systems, test_embeddings, mean)
    results["diarization"] = diarize_conversations(args)
    from r2n_audio.atomic import atomic_write_text

    atomic_write_text(Path(args.exp) / "results.json", json.dumps(results, indent=1) + "\n")
    print_table(results)
    d = results["diarization"]
    print(f"diarization: DER {d['der']:.2f}% (missed {d['missed']:.2f}, false alarm "
          f"{d['false_alarm']:.2f}, confusion {d['confusion']:.2f}) on {d['recordings']} "
          f"conversations of 2-6 held-out speakers ({d['audio_seconds'] / 60:.1f} min, collar "
          f"{d['collar']} s), {d['seconds']:.0f} s")
    print(f"wrote {args.exp}/results.json, det.png, test_embeddings.npz, model.pt")
    return results


if __name__ == "__main__":
    main()
