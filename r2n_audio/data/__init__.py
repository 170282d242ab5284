"""r2n_audio.data."""
