"""The synthetic corpus: layout, counts, held-out speakers, trials, determinism, voice content."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest
import soundfile as sf

from r2n_audio.data.manifests import read_spk2utt, read_trials, read_utt2spk, read_wav_scp
from r2n_audio.data.synthetic import GENERATOR_VERSION, make_corpus, make_trials
from r2n_audio.errors import R2NError


def _wav_bytes(root, folder="wav"):
    return {p.relative_to(root): p.read_bytes() for p in sorted((root / folder).rglob("*.wav"))}


def test_layout_counts_and_consistency(tiny_corpus):
    train = read_utt2spk(tiny_corpus / "train" / "utt2spk")
    test = read_utt2spk(tiny_corpus / "test" / "utt2spk")
    assert len(set(train.values())) == 8 and len(set(test.values())) == 4
    assert set(train.values()).isdisjoint(test.values())
    assert len(train) == 8 * 4 and len(test) == 4 * 4
    assert read_utt2spk(tiny_corpus / "utt2spk") == {**train, **test}
    for folder in (tiny_corpus, tiny_corpus / "train", tiny_corpus / "test"):
        utt2spk = read_utt2spk(folder / "utt2spk")
        wav_scp = read_wav_scp(folder / "wav.scp")
        assert set(wav_scp) == set(utt2spk)
        spk2utt = read_spk2utt(folder / "spk2utt")
        assert {u: s for s, us in spk2utt.items() for u in us} == utt2spk
        for key, path in wav_scp.items():
            # keys are the path under wav/ without extension, speaker first
            assert path.replace("\\", "/").endswith(f"wav/{key}.wav")
            assert key.split("/")[0] == utt2spk[key]
    meta = json.loads((tiny_corpus / "corpus.json").read_text())
    assert meta["n_utterances"] == 48 and meta["seed"] == 0 and meta["generation_seconds"] > 0
    assert meta["version"] == GENERATOR_VERSION
    assert set(meta["speakers"]) == set(train.values()) | set(test.values())


def test_audio_format_and_durations(tiny_corpus):
    for path in read_wav_scp(tiny_corpus / "wav.scp").values():
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 1.0 <= info.duration <= 2.0 + 1e-3
        audio, _ = sf.read(path)
        peak = np.abs(audio).max()
        assert 0.09 < peak < 0.9  # recording levels are drawn between -20 and -1 dBFS


def test_trials_cover_held_out_speakers_only(tiny_corpus):
    trials = read_trials(tiny_corpus / "trials.txt")
    test = read_utt2spk(tiny_corpus / "test" / "utt2spk")
    assert set(trials.keys()) <= set(test)
    same = np.array([test[e] == test[t] for e, t in zip(trials.enroll, trials.test)])
    np.testing.assert_array_equal(trials.labels, same.astype(np.int8))
    # 16 utterances: all 120 pairs fit under the cap, so every pair is listed once
    pairs = {frozenset(p) for p in zip(trials.enroll, trials.test)}
    assert pairs == {frozenset(p) for p in combinations(sorted(test), 2)}


def test_make_trials_all_targets_and_matched_nontargets():
    spk2utt = {f"s{s:02d}": [f"s{s:02d}/u{u:02d}" for u in range(12)] for s in range(20)}
    trials = make_trials(spk2utt, seed=3)
    n_target = 20 * 66
    assert int(trials.labels.sum()) == n_target
    assert len(trials) == 2 * n_target
    pairs = list(zip(trials.enroll, trials.test))
    assert len(set(pairs)) == len(pairs)
    for (e, t), y in zip(pairs, trials.labels):
        assert (e.split("/")[0] == t.split("/")[0]) == bool(y) and e < t
    again = make_trials(spk2utt, seed=3)
    assert again.enroll == trials.enroll and again.test == trials.test
    assert make_trials(spk2utt, seed=4).enroll != trials.enroll


def test_deterministic_whatever_the_workers(tmp_path):
    kwargs = dict(n_train_speakers=2, n_test_speakers=2, utts_per_speaker=4,
                  min_seconds=0.5, max_seconds=0.8,
                  augment_sets={"noise": 2, "music": 2, "speech": 2, "rir": 3})
    make_corpus(tmp_path / "a", seed=5, workers=1, **kwargs)
    make_corpus(tmp_path / "b", seed=5, workers=2, **kwargs)
    make_corpus(tmp_path / "c", seed=6, workers=1, **kwargs)
    a, b, c = (_wav_bytes(tmp_path / x) for x in "abc")
    assert len(a) == 16 and a == b
    assert set(a) == set(c) and all(a[k] != c[k] for k in a)
    a, b, c = ({**_wav_bytes(tmp_path / x, "musan"), **_wav_bytes(tmp_path / x, "rirs")}
               for x in "abc")
    assert len(a) == 9 and a == b
    assert set(a) == set(c) and all(a[k] != c[k] for k in a)
    for name in ("wav.scp", "utt2spk", "spk2utt", "trials.txt"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


def test_held_out_speakers_do_not_depend_on_training_count(tmp_path):
    kwargs = dict(n_test_speakers=2, utts_per_speaker=2, seed=1, min_seconds=0.5,
                  max_seconds=0.6, workers=1, augment_sets=False)
    make_corpus(tmp_path / "a", n_train_speakers=0, **kwargs)
    make_corpus(tmp_path / "b", n_train_speakers=3, **kwargs)
    a, b = _wav_bytes(tmp_path / "a"), _wav_bytes(tmp_path / "b")
    assert a.items() <= b.items() and len(b) == len(a) + 6
    assert (tmp_path / "a" / "train" / "wav.scp").read_text() == ""


@pytest.mark.parametrize("kwargs", [
    dict(n_test_speakers=1), dict(utts_per_speaker=1), dict(n_train_speakers=-1),
    dict(min_seconds=3.0, max_seconds=2.0), dict(min_seconds=0.1),
])
def test_bad_arguments_are_user_errors(tmp_path, kwargs):
    with pytest.raises(R2NError):
        make_corpus(tmp_path, **kwargs)


def _median_f0(audio: np.ndarray, sr: int = 16000) -> float:
    """Brute-force autocorrelation pitch of the loudest 30 % of 40 ms frames, 60-400 Hz."""
    frame = int(0.04 * sr)
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame)
    loud = frames[np.argsort((frames ** 2).sum(1))[-max(3, len(frames) * 3 // 10):]]
    lags = np.arange(sr // 400, sr // 60)
    f0 = []
    for x in loud:
        x = x - x.mean()
        ac = np.array([np.dot(x[:-lag], x[lag:]) for lag in lags])
        f0.append(sr / lags[np.argmax(ac)])
    return float(np.median(f0))


def test_speaker_pitch_is_in_the_audio(tiny_corpus):
    """An oracle check that the corpus is not noise: each speaker's drawn mean F0 is what a
    plain autocorrelation pitch tracker measures on its recordings."""
    speakers = json.loads((tiny_corpus / "corpus.json").read_text())["speakers"]
    spk2utt = read_spk2utt(tiny_corpus / "spk2utt")
    wav_scp = read_wav_scp(tiny_corpus / "wav.scp")
    true, measured = [], []
    for spk, utts in spk2utt.items():
        estimates = [_median_f0(sf.read(wav_scp[u])[0]) for u in utts]
        true.append(np.log(speakers[spk]["f0"]))
        measured.append(np.median(np.log(estimates)))
    assert np.corrcoef(true, measured)[0, 1] > 0.8


def test_make_trials_samples_large_lists():
    """Over 2,000 utterances the nontargets are sampled instead of enumerated."""
    spk2utt = {f"s{s:03d}": [f"s{s:03d}/u{u:02d}" for u in range(12)] for s in range(200)}
    trials = make_trials(spk2utt, seed=0)
    n_target = 200 * 66
    assert int(trials.labels.sum()) == n_target and len(trials) == 2 * n_target
    pairs = list(zip(trials.enroll, trials.test))
    assert len(set(pairs)) == len(pairs) and pairs == sorted(pairs)
    assert all((e[:4] == t[:4]) == bool(y) for (e, t), y in zip(pairs, trials.labels))


def test_augmentation_sets_feed_the_augmentation_modules(tiny_corpus):
    """musan/ and rirs/ are in the layouts AddNoise and Reverberate read; babble is voiced
    speech, each RIR starts with its direct path, music is tonal (peaky, unlike the noise)."""
    import torch

    from r2n_audio.features.augment import AddNoise, Reverberate

    noise = AddNoise(tiny_corpus / "musan", seed=0)
    assert {k: len(v) for k, v in noise.files.items()} == {"noise": 40, "music": 40,
                                                         "speech": 40}
    reverb = Reverberate(tiny_corpus / "rirs", seed=0)
    assert len(reverb.files) == 200
    for path in reverb.files[:20]:
        rir, _ = sf.read(path)
        assert np.argmax(np.abs(rir)) == 0
    for path in noise.files["speech"][:3]:
        assert 60.0 < _median_f0(sf.read(path)[0]) < 400.0

    def peakiness(path):  # max / median of the long-term power spectrum, in dB
        power = np.abs(np.fft.rfft(sf.read(path)[0][:16000 * 4])) ** 2
        return 10 * np.log10(power.max() / np.median(power))

    assert min(map(peakiness, noise.files["music"][:5])) > 40.0
    wave = torch.zeros(16000)
    wave[::400] = 1.0
    assert noise(wave).shape == wave.shape and reverb(wave).shape == wave.shape


def test_articulation_traits_reach_the_tracks():
    """A speaker's vowel-space size spreads F1/F2 and fric_shift moves every noise centre:
    the same text (same generator state) for versions of one voice that differ in one trait."""
    import dataclasses

    from r2n_audio.data.synthetic import speaker_voice
    from r2n_audio.data.synthetic.phonetics import utterance_tracks

    voice = dataclasses.replace(speaker_voice(0, 1, 0), nasality=0.0)
    tracks = {name: utterance_tracks(dataclasses.replace(voice, **change),
                                     np.random.default_rng(4), 400, 0.008)
              for name, change in {"wide": dict(vowel_space=1.3),
                                   "narrow": dict(vowel_space=1.0 / 1.3),
                                   "shifted": dict(vowel_space=1.0 / 1.3, fric_shift=1.2),
                                   "plain": dict(vowel_space=1.0 / 1.3, fric_shift=1.0)}.items()}
    vowels = (tracks["wide"].voicing > 0.5) & (tracks["wide"].nasal < 0.02)
    spread = {k: np.log(tracks[k].formants[vowels, :2]).std(axis=0) for k in ("wide", "narrow")}
    assert np.all(spread["wide"] > 1.3 * spread["narrow"])
    np.testing.assert_allclose(tracks["shifted"].fric_shapes[1:, 0],
                               1.2 * tracks["plain"].fric_shapes[1:, 0])
