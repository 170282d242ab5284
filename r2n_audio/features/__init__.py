"""r2n_audio.features."""
