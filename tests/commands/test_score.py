"""``r2n-audio score`` in process (``cli.main``) and once through the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from r2n_audio.cli import main
from r2n_audio.data.embeddings import save_embeddings
from r2n_audio.scoring.metrics import compute_eer, compute_min_dcf


@pytest.fixture
def store(tmp_path, rng):
    """12 speakers x 4 utterances of 16-d embeddings, a VoxCeleb list and a Kaldi list."""
    centres = rng.standard_normal((12, 16))
    emb = {f"id{s:02d}/v/{u}": (centres[s] + 0.8 * rng.standard_normal(16)).astype(np.float32)
           for s in range(12) for u in range(4)}
    save_embeddings(tmp_path / "emb", emb)
    keys = sorted(emb)
    pairs = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]]
    same = [a.split("/")[0] == b.split("/")[0] for a, b in pairs]
    (tmp_path / "veri.txt").write_text(
        "".join(f"{int(y)} {a}.wav {b}.wav\n" for (a, b), y in zip(pairs, same)))
    (tmp_path / "trials").write_text(
        "".join(f"{a} {b} {'target' if y else 'nontarget'}\n" for (a, b), y in zip(pairs, same)))
    np.save(tmp_path / "cohort.npy", rng.standard_normal((50, 16)).astype(np.float32))
    return tmp_path, emb, pairs, np.array(same, dtype=int)


def _run_json(capsys, *argv):
    assert main(["score", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_matches_independent_cosine(store, capsys):
    tmp, emb, pairs, labels = store
    out = _run_json(capsys, tmp / "veri.txt", "--embeddings", tmp / "emb")
    unit = {k: v / np.linalg.norm(v) for k, v in emb.items()}
    ref = np.array([unit[a] @ unit[b] for a, b in pairs])
    assert out["eer"] == pytest.approx(100 * compute_eer(ref, labels)[0], abs=1e-6)
    assert out["min_dcf_0.01"] == pytest.approx(compute_min_dcf(ref, labels, 0.01)[0], abs=1e-6)
    assert out["min_dcf_0.05"] == pytest.approx(compute_min_dcf(ref, labels, 0.05)[0], abs=1e-6)
    assert (out["n_target"], out["n_nontarget"], out["n_missing"]) == (72, 1056, 0)
    assert isinstance(out["threshold_eer"], float)


@pytest.mark.parametrize("fmt", ["e.npz", "x.ark", "x.scp"])
def test_other_stores_and_kaldi_list_agree(store, capsys, fmt):
    tmp, emb, _, _ = store
    save_embeddings(tmp / fmt, emb)
    a = _run_json(capsys, tmp / "trials", "--embeddings", tmp / fmt)
    b = _run_json(capsys, tmp / "veri.txt", "--embeddings", tmp / "emb")
    assert a["eer"] == pytest.approx(b["eer"]) and a["min_dcf_0.01"] == b["min_dcf_0.01"]


def test_outputs_allow_missing_and_as_norm(store, capsys):
    tmp, emb, pairs, _ = store
    (tmp / "emb/id00/v/0.npy").unlink()
    out = _run_json(capsys, tmp / "trials", "--embeddings", tmp / "emb", "--allow-missing",
                    "--cohort", tmp / "cohort.npy", "--top-n", "10", "--mean", tmp / "emb",
                    "--output", tmp / "scores.txt", "--det", tmp / "det.png")
    n_missing = sum("id00/v/0" in p for p in pairs)
    assert out["n_missing"] == n_missing == 47 and out["scoring"].endswith("AS-Norm top-10")
    lines = (tmp / "scores.txt").read_text().splitlines()
    assert len(lines) == len(pairs) - n_missing and lines[0].split()[:2] == ["id00/v/1",
                                                                             "id00/v/2"]
    assert (tmp / "det.png").read_bytes()[:4] == b"\x89PNG"
    # The values: AS-Norm computed independently, one trial at a time (sklearn's cosine).
    del emb["id00/v/0"]
    written = {tuple(line.split()[:2]): float(line.split()[2]) for line in lines}
    expected = _naive_as_norm(emb, np.load(tmp / "cohort.npy"), top_n=10)
    for (a, b), value in list(written.items())[::37]:
        assert value == pytest.approx(expected(a, b), abs=1e-5)


def _naive_as_norm(emb, cohort, top_n):
    """s' = 1/2 [(s - mu_e)/sd_e + (s - mu_t)/sd_t] over the top-N cohort cosines, after
    subtracting the mean of every stored embedding (the store given as --mean)."""
    from sklearn.metrics.pairwise import cosine_similarity

    mean = np.mean(np.stack(list(emb.values())).astype(np.float64), axis=0)

    def stats(x):
        top = np.sort(cosine_similarity([x - mean], cohort - mean)[0])[::-1][:top_n]
        return top.mean(), top.std()

    def score(a, b):
        x, y = emb[a] - mean, emb[b] - mean
        s = cosine_similarity([x], [y])[0, 0]
        (mu_e, sd_e), (mu_t, sd_t) = stats(emb[a]), stats(emb[b])
        return 0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)

    return score


@pytest.mark.parametrize("cohort_rows,top_n", [(1, "300"), (50, "1")])
def test_as_norm_refuses_one_score_statistics(store, capsys, cohort_rows, top_n):
    tmp, *_ = store
    np.save(tmp / "one.npy", np.load(tmp / "cohort.npy")[:cohort_rows])
    rc = main(["score", str(tmp / "veri.txt"), "--embeddings", str(tmp / "emb"),
               "--cohort", str(tmp / "one.npy"), "--top-n", top_n])
    err = capsys.readouterr().err
    assert rc == 2 and "at least 2" in err.strip().splitlines()[-1] and "Traceback" not in err


def test_fit_then_apply_calibration(store, capsys):
    tmp, *_ = store
    args = [tmp / "veri.txt", "--embeddings", tmp / "emb", "--cohort", tmp / "cohort.npy",
            "--top-n", "10"]
    _run_json(capsys, *args, "--fit-calibration", tmp / "cal.json", "--qmf")
    saved = json.loads((tmp / "cal.json").read_text())
    assert set(saved["quality_weights"]) == {"enroll_norm", "test_norm", "enroll_cohort_mean",
                                             "test_cohort_mean"}
    out = _run_json(capsys, *args, "--calibration", tmp / "cal.json")
    assert out["cllr"] < 1.0 and "act_dcf_0.01" in out
    # The calibration asks for cohort means: without --cohort it is an input error.
    assert main(["score", str(tmp / "veri.txt"), "--embeddings", str(tmp / "emb"),
                 "--calibration", str(tmp / "cal.json")]) == 2
    assert "needs --cohort" in capsys.readouterr().err


def test_unlabelled_list_scores_only(store, capsys):
    tmp, *_ = store
    (tmp / "eval.txt").write_text("id00/v/0.wav id01/v/1.wav\nid02/v/0 id02/v/1\n")
    out = _run_json(capsys, tmp / "eval.txt", "--embeddings", tmp / "emb",
                    "--output", tmp / "s.txt")
    assert out["eer"] is None and len((tmp / "s.txt").read_text().splitlines()) == 2
    assert main(["score", str(tmp / "eval.txt"), "--embeddings", str(tmp / "emb")]) == 0
    assert "no metrics" in capsys.readouterr().out


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "bad.txt").write_text("1 id00/v/0.wav id00/v/1.wav\n1 id00/v/0.wav\n")
    (tmp / "empty.txt").write_text("\n")
    (tmp / "odd.txt").write_text("id00/v/0 id00/v/1 same\n")
    (tmp / "miss.txt").write_text("1 id00/v/0.wav id00/v/1.wav\n0 id00/v/0.wav ghost/x/1.wav\n")
    (tmp / "emb.json").write_text("{}")
    emb = str(tmp / "emb")
    return {
        "missing": (["miss.txt", "--embeddings", emb], "miss.txt:2: no embedding for 'ghost/x/1'"),
        "malformed": (["bad.txt", "--embeddings", emb], "bad.txt:2: expected 3 fields"),
        "empty": (["empty.txt", "--embeddings", emb], "empty.txt: empty file"),
        "trial format": (["odd.txt", "--embeddings", emb], "odd.txt:1: cannot tell the trial"),
        "store format": (["veri.txt", "--embeddings", str(tmp / "emb.json")],
                         "unknown embedding format"),
        "dimension": (["veri.txt", "--embeddings", emb, "--mean", str(tmp / "m.npy")],
                      "dimension 3 does not match"),
    }


@pytest.mark.parametrize("case", ["missing", "malformed", "empty", "trial format",
                                  "store format", "dimension"])
def test_bad_input_one_line_exit_2_outputs_untouched(store, capsys, case):
    tmp, *_ = store
    np.save(tmp / "m.npy", np.ones(3))
    argv, message = _bad_inputs(tmp)[case]
    argv[0] = str(tmp / argv[0])
    for name in ("scores.txt", "det.png"):
        (tmp / name).write_text("old")
    rc = main(["score", *argv, "--output", str(tmp / "scores.txt"), "--det", str(tmp / "det.png")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and message in err
    assert "Traceback" not in err
    assert (tmp / "scores.txt").read_text() == "old" and (tmp / "det.png").read_text() == "old"
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith(".")) == []


def test_console_script(store):
    tmp, *_ = store
    script = Path(sys.executable).with_name("r2n-audio")
    ok = subprocess.run([script, "score", tmp / "veri.txt", "--embeddings", tmp / "emb",
                         "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout)["n_target"] == 72
    bad = subprocess.run([script, "score", tmp / "veri.txt", "--embeddings", tmp / "nowhere"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith(f"r2n-audio score: error: {tmp / 'nowhere'}: embedding store "
                                 "not found")
