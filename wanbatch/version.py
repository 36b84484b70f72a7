"""The version of wanbatch (pyproject.toml reads it from here), and of the packages that shape its renders."""

from __future__ import annotations

import functools

__version__ = "0.2.0"

#: the packages whose versions decide what a render looks like (and how it is scheduled), where installed
SHAPING_PACKAGES = ("torch", "diffusers", "transformers", "xfuser", "ray", "httpx")


def package_versions(names: tuple[str, ...] = SHAPING_PACKAGES) -> dict[str, str]:
    """Installed versions by name, where installed; nothing is imported to say its version.

    pip names each installed package's metadata folder `<name>-<version>.dist-info` (the name normalised:
    lower case, `-` and `.` as `_`), so one listing of each folder on sys.path finds them all. That costs about
    a millisecond, where importlib.metadata, which searches the whole path once per name, took 75 ms for six."""
    import os
    import sys

    wanted = {_normal(n): n for n in names}
    found: dict[str, str] = {}
    for folder in sys.path:
        try:
            entries = os.scandir(folder or ".")
        except OSError:
            continue
        with entries:
            for entry in entries:
                for suffix in (".dist-info", ".egg-info"):
                    if entry.name.endswith(suffix):
                        name, _, version = entry.name[: -len(suffix)].partition("-")
                        key = wanted.get(_normal(name))
                        if key is not None and key not in found and version:
                            found[key] = version.split("-")[0]  # egg-info: <name>-<version>-py3.11
    return {n: found[n] for n in names if n in found}


def _normal(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def source_digest(*modules: str) -> str:
    """A digest of these wanbatch modules' source files (e.g. `wanbatch.av.whole`): the version of what they
    compute, for results kept between runs (media found whole, a timeline's text). It changes with any edit,
    also in a checkout whose version number did not; where a source cannot be read, the version stands in."""
    return _source_digest(tuple(modules))


@functools.cache
def _source_digest(modules: tuple[str, ...]) -> str:
    import hashlib
    import importlib
    import sys

    h = hashlib.sha256(__version__.encode())
    for name in modules:
        try:
            module = sys.modules.get(name) or importlib.import_module(name)
            with open(str(module.__file__), "rb") as f:
                h.update(f.read())
        except (OSError, ImportError):
            h.update(f"{name}: unreadable".encode())
    return h.hexdigest()[:16]
