"""Train a speaker model on VoxCeleb (or any Kaldi-style data dir) with LightningCLI.

    python recipes/voxceleb/train.py fit --config recipes/voxceleb/conf/resnet34.yaml
    python recipes/voxceleb/train.py fit --config recipes/voxceleb/conf/resnet34.yaml \\
        --trainer.devices=8 --model.lr=1.6

The LR is used as written: 1.6 is WeSpeaker's for 8 GPUs x 128 (its base LR 0.1 times
world_size * batch / 64, which its code applies silently); the configs' 0.2 is the value for
one GPU x 128. See recipes/voxceleb/README.md for the stages (prepare, train, LM, average, embed,
cohort, score, export); every option is listed by `--help`.
"""

from r2n_audio.training.cli import main

if __name__ == "__main__":
    main()
