"""Train a speaker model on VoxCeleb (or any Kaldi-style data dir) with LightningCLI.

    python recipes/voxceleb/train.py fit --config recipes/voxceleb/conf/ecapa_c512.yaml
    python recipes/voxceleb/train.py fit --config recipes/voxceleb/conf/ecapa_c512.yaml \
        --trainer.devices=8 --trainer.precision=bf16-mixed --model.lr=0.8

See recipes/voxceleb/README.md for the stages (prepare, train, LM, average, embed, score,
export); every option is listed by `--help`.
"""

from r2n_audio.training.cli import main

if __name__ == "__main__":
    main()
