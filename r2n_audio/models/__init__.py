"""Speaker backbones and the 2-D Res2Net family behind one registry.

>>> from r2n_audio.models import create_model, list_models
>>> model = create_model("ecapa_tdnn_tiny")
>>> model.embed_dim
64
"""

from r2n_audio.models.registry import create_model, is_model, list_models, register_model
from r2n_audio.models import dla, res2net1d, res2net2d_zoo  # noqa: F401  (registers the families)
from r2n_audio.models import campplus, ecapa_wespeaker, simam_resnet  # noqa: F401
from r2n_audio.models import eres2net, eres2netv2  # noqa: F401

__all__ = ["create_model", "list_models", "register_model", "is_model"]
