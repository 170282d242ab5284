"""r2n_audio.training."""
