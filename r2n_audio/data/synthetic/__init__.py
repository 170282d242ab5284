"""A built-in synthetic speaker corpus: source-filter voices in random rooms and channels.

``make_corpus(out_dir, ...)`` writes wav files and Kaldi-style data files (see
:mod:`r2n_audio.data.synthetic.corpus`); the voice model is in :mod:`.voice`, the phonetics in
:mod:`.phonetics`, the synthesis in :mod:`.synth` and the recording conditions in
:mod:`.channel`.
"""

from r2n_audio.data.synthetic.corpus import (
    GENERATOR_VERSION,
    CorpusInfo,
    make_corpus,
    make_trials,
    speaker_voice,
    synthesize_utterance,
)
from r2n_audio.data.synthetic.voice import SpeakerVoice, sample_speaker

__all__ = [
    "GENERATOR_VERSION",
    "CorpusInfo",
    "SpeakerVoice",
    "make_corpus",
    "make_trials",
    "sample_speaker",
    "speaker_voice",
    "synthesize_utterance",
]
