"""r2n_audio.scoring."""
