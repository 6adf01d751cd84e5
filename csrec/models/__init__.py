"""Backbones, one per file, found by name through the registry in :mod:`csrec.models.base`.

Adding a backbone is a one-file change: write ``csrec/models/<name>.py`` with a config dataclass
and a ``@register("<name>", <Config>)`` class, and list the module below.
"""

from csrec.models.base import (
    BackboneConfig,
    SequentialRecommender,
    backbone_class,
    backbone_names,
    build_backbone,
    make_backbone_config,
    register,
)

# Importing a backbone module registers it.
from csrec.models import bert4rec, cl4srec, dreamrec, gru4rec, narm, nextitnet, sasrec, srgnn  # noqa: E402,F401

__all__ = [
    "BackboneConfig",
    "SequentialRecommender",
    "backbone_class",
    "backbone_names",
    "build_backbone",
    "make_backbone_config",
    "register",
]
