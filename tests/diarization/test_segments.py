"""Windows over speech, the vote back to frames, and turn post-processing (hand-worked)."""

from __future__ import annotations

import numpy as np
import pytest

from r2n_audio.diarization.segments import (Turn, frames_to_turns, sliding_windows,
                                            speech_mask, vote)


def test_windows_cover_regions_with_full_length_windows():
    windows = sliding_windows([(0.0, 4.0)], window=1.5, hop=0.75)
    np.testing.assert_allclose(windows, [[0, 1.5], [0.75, 2.25], [1.5, 3.0], [2.25, 3.75],
                                         [2.5, 4.0]])
    short = sliding_windows([(1.0, 1.2), (9.9, 10.0)], min_window=0.5, duration=10.0)
    np.testing.assert_allclose(short, [[0.85, 1.35], [9.5, 10.0]])
    assert sliding_windows([], 1.5, 0.75).shape == (0, 2)
    with pytest.raises(ValueError):
        sliding_windows([(0, 3)], window=1.0, hop=2.0)


def test_vote_gives_each_frame_to_the_nearer_window_centre():
    windows = np.array([[0.0, 1.5], [0.75, 2.25]])
    mask = speech_mask([(0.0, 2.25)], 230, 0.01)
    frames = vote(windows, np.array([0, 1]), mask, 0.01)
    assert (frames[:112] == 0).all() and (frames[113:225] == 1).all()
    assert (frames[225:] == -1).all()


def test_post_processing():
    step = 0.01
    frames = np.array([0] * 100 + [1] * 10 + [0] * 100 + [-1] * 30 + [0] * 100
                      + [-1] * 100 + [1] * 15 + [-1] * 100 + [1] * 200)
    turns = frames_to_turns(frames, step, ["A", "B"], min_duration=0.25, merge_gap=0.5)
    # the 0.1 s B inside A is A's; the 0.3 s pause joins A's turns, the 1 s one does not;
    # the isolated 0.15 s B is dropped
    assert turns == [Turn(0.0, 3.4, "A"), Turn(5.55, 7.55, "B")]
    kept = frames_to_turns(frames, step, ["A", "B"], min_duration=0.0, merge_gap=0.0)
    assert Turn(1.0, 1.1, "B") in kept and len(kept) == 6
