"""Backends by name. Entries are import strings so the core never imports torch or xfuser by accident."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from wanbatch.config.backends import BackendConfig
from wanbatch.core.backend import Backend

REGISTRY: dict[str, str] = {
    "preview": "wanbatch.backends.preview:PreviewBackend",
    "gmi_wan21_i2v": "wanbatch.backends.remote.gmi:GmiWan21I2V",
    "gmi_wan21_flf2v": "wanbatch.backends.remote.gmi:GmiWan21Flf2v",
    "gmi_wan27_i2v": "wanbatch.backends.remote.gmi:GmiWan27I2V",
    "aiml_wan27_i2v": "wanbatch.backends.remote.aiml:AimlWan27I2V",
    "novita_wan21_t2v": "wanbatch.backends.remote.novita:NovitaWan21T2V",
    "diffusers": "wanbatch.backends.local.diffusers:DiffusersBackend",
    "xdit": "wanbatch.backends.local.xdit:XditBackend",
}


def get_backend_class(name: str) -> type[Backend]:
    """The class registered under `name`. Raises KeyError for an unknown name."""
    module_name, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]


def build_backends(
    configs: Mapping[str, BackendConfig], given: Mapping[str, Backend] | None = None
) -> dict[str, Backend]:
    """A backend for every name in `configs` (a project's `backend_configs`), built from its config; a backend
    in `given` (tests, tools) is taken as it is."""
    given = given or {}
    return {name: given[name] if name in given else get_backend_class(name)(cfg) for name, cfg in configs.items()}


__all__ = ["REGISTRY", "build_backends", "get_backend_class"]
