"""Progress output: a bar only on a terminal, plain periodic lines in a log, nothing when quiet."""

from __future__ import annotations

import argparse
import io

from r2n_audio.progress import Progress, add_quiet_argument


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(stream, **kwargs) -> str:
    with Progress(4, "embed", unit="file", stream=stream, **kwargs) as progress:
        for _ in range(4):
            progress.update()
        progress.write("embed: skipped x.wav: too short")
    return stream.getvalue()


def test_a_terminal_gets_a_bar() -> None:
    text = _run(_Terminal())
    assert "\r" in text and "4/4" in text and "embed: skipped x.wav" in text


def test_a_log_gets_whole_lines_and_no_bar() -> None:
    text = _run(io.StringIO(), interval=0.0)
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "embed: 1/4 files (25%), 0 s, about 0 s left"
    assert lines[3].startswith("embed: 4/4 files (100%)") and len(lines) == 5
    assert "embed: skipped x.wav: too short" in lines


def test_a_short_job_in_a_log_prints_only_its_messages() -> None:
    assert _run(io.StringIO(), interval=60.0) == "embed: skipped x.wav: too short\n"


def test_quiet_prints_only_messages_even_on_a_terminal() -> None:
    assert _run(_Terminal(), quiet=True) == "embed: skipped x.wav: too short\n"


def test_one_flag_name_with_the_old_alias() -> None:
    parser = argparse.ArgumentParser()
    add_quiet_argument(parser)
    assert parser.parse_args(["--quiet"]).quiet and parser.parse_args(["--no-progress"]).quiet
    assert not parser.parse_args([]).quiet
    assert "--no-progress" not in parser.format_help()
