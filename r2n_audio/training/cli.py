"""LightningCLI for speaker training: one YAML per experiment, overrides on the command line.

::

    python recipes/voxceleb/train.py fit --config recipes/voxceleb/conf/ecapa_c512.yaml \\
        --trainer.devices=8 --trainer.precision=bf16-mixed --data.batch_size=128

Every option is a type-hinted ``__init__`` argument of :class:`SpeakerModule`,
:class:`SpeakerDataModule` or the Lightning ``Trainer`` (``--help`` lists them,
``--print_config`` shows the merged result). The number of classes is not configured: the data
module reads the speakers from ``utt2spk`` and LightningCLI passes it to the model
(``link_arguments(..., apply_on="instantiate")``). No value is rewritten behind the user's back:
the learning rate in the YAML is the one used, whatever the number of devices.
"""

from __future__ import annotations

from typing import Sequence

from pytorch_lightning.cli import LightningCLI

from r2n_audio.training.datamodule import SpeakerDataModule
from r2n_audio.training.module import SpeakerModule

__all__ = ["SpeakerCLI", "main"]


class SpeakerCLI(LightningCLI):
    """LightningCLI over :class:`SpeakerModule` and :class:`SpeakerDataModule`."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")


def main(args: Sequence[str] | None = None, run: bool = True) -> SpeakerCLI:
    """Run the CLI (``args`` defaults to ``sys.argv[1:]``); returns it for inspection."""
    return SpeakerCLI(SpeakerModule, SpeakerDataModule, args=args, run=run,
                      save_config_kwargs={"overwrite": True}, seed_everything_default=0)


if __name__ == "__main__":
    main()
