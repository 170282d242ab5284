"""DER through DERScorer against pyannote.metrics used directly, and hand-worked values."""

from __future__ import annotations

import pytest

from r2n_audio.diarization.segments import Turn

metrics = pytest.importorskip("pyannote.metrics.diarization")
core = pytest.importorskip("pyannote.core")

from r2n_audio.diarization.der import DERScorer, to_annotation  # noqa: E402

REF = [Turn(0.0, 4.0, "A"), Turn(4.5, 9.0, "B"), Turn(8.0, 10.0, "A"), Turn(12.0, 15.0, "C")]
HYP = [Turn(0.2, 4.4, "s1"), Turn(4.4, 8.5, "s2"), Turn(8.5, 11.0, "s1"), Turn(12.5, 14.0, "s2")]


def _direct(reference, hypothesis, collar, skip_overlap, duration):
    uem = core.Timeline([core.Segment(0, duration)])
    metric = metrics.DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
    return metric(to_annotation(reference, "f"), to_annotation(hypothesis, "f"), uem=uem,
                  detailed=True)


@pytest.mark.parametrize("collar", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("skip_overlap", [False, True])
def test_matches_pyannote_metrics(collar, skip_overlap):
    ours = DERScorer(collar=collar, skip_overlap=skip_overlap).add("f", REF, HYP, 16.0)
    theirs = _direct(REF, HYP, 2 * collar, skip_overlap, 16.0)
    assert ours["der"] == pytest.approx(theirs["diarization error rate"], abs=1e-6)
    assert ours["speech"] == pytest.approx(theirs["total"], abs=1e-6)
    for name, key in (("missed", "missed detection"), ("false_alarm", "false alarm"),
                      ("confusion", "confusion")):
        assert ours[name] == pytest.approx(theirs[key] / theirs["total"], abs=1e-6)


def test_hand_worked_values():
    """Reference A 0-10; hypothesis x 0-8, y 8-10.2: 2 s confusion, 0.2 s false alarm."""
    ref, hyp = [Turn(0, 10, "A")], [Turn(0, 8, "x"), Turn(8, 10.2, "y")]
    plain = DERScorer(collar=0.0).add("f", ref, hyp, 12.0)
    assert (plain["confusion"], plain["false_alarm"], plain["der"]) == \
        pytest.approx((0.2, 0.02, 0.22))
    # 0.25 s each side of the reference boundaries 0 and 10: 9.5 s scored, the false alarm
    # (10-10.2) falls in the collar, the confusion 8-9.75 stays.
    collared = DERScorer(collar=0.25).add("f", ref, hyp, 12.0)
    assert collared["speech"] == pytest.approx(9.5)
    assert collared["der"] == pytest.approx(1.75 / 9.5)


def test_overall_sums_seconds_before_dividing():
    scorer = DERScorer(collar=0.0)
    scorer.add("a", [Turn(0, 10, "A")], [Turn(0, 9, "x")], 10.0)   # 1 s missed of 10
    scorer.add("b", [Turn(0, 30, "B")], [Turn(0, 30, "y")], 30.0)  # perfect
    total = scorer.total()
    assert total["der"] == pytest.approx(1 / 40) and total["missed"] == pytest.approx(1 / 40)
    assert scorer.report()["files"]["a"]["der"] == pytest.approx(0.1)


def test_no_reference_speech():
    assert DERScorer().add("a", [], [], 5.0)["der"] == 0.0
    assert DERScorer().add("b", [], [Turn(0, 1, "x")], 5.0)["der"] == 1.0
