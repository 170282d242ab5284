"""One module per ``r2n-audio`` subcommand (see :mod:`r2n_audio.cli`)."""
