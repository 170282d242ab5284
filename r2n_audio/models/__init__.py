"""r2n_audio.models."""
