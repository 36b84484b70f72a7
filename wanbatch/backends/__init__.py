"""Backends by name. Entries are import strings so the core never imports torch or xfuser by accident."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Backend

REGISTRY: dict[str, str] = {
    "preview": "wanbatch.backends.preview:PreviewBackend",
    "gmi_wan21_i2v": "wanbatch.backends.gmi:GmiWan21I2V",
    "gmi_wan21_flf2v": "wanbatch.backends.gmi:GmiWan21Flf2v",
    "gmi_wan27_i2v": "wanbatch.backends.gmi:GmiWan27I2V",
    "aiml_wan27_i2v": "wanbatch.backends.aiml:AimlWan27I2V",
    "novita_wan21_t2v": "wanbatch.backends.novita:NovitaWan21T2V",
    "diffusers": "wanbatch.backends.diffusers:DiffusersBackend",
    "xdit": "wanbatch.backends.xdit:XditBackend",
}


def get_backend_class(name: str) -> type[Backend]:
    """The class registered under `name`. Raises KeyError for an unknown name."""
    module_name, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]


__all__ = ["REGISTRY", "get_backend_class"]
