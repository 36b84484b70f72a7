"""Wan checkpoints: friendly names, model-card defaults, and the embedded tiny models.

Importing this package does not import torch; building a tiny model does.
"""

from __future__ import annotations

from wanbatch.backends.local.models.registry import (
    MODELS,
    ModelSpec,
    UnknownModel,
    folder_identity,
    known_names,
    resolve,
    split_revision,
)
from wanbatch.backends.local.models.tiny import TINY_MODELS, TINY_VERSION, build_tiny, default_models_dir, ensure_tiny

__all__ = [
    "MODELS",
    "TINY_MODELS",
    "TINY_VERSION",
    "ModelSpec",
    "UnknownModel",
    "build_tiny",
    "default_models_dir",
    "ensure_tiny",
    "folder_identity",
    "known_names",
    "resolve",
    "split_revision",
]
