"""`wanbatch --version`: wanbatch's version, and those of the parts that decide what a render looks like."""

from __future__ import annotations

import platform

from wanbatch.version import __version__, package_versions

SHOWN = ("torch", "diffusers", "transformers", "xfuser", "ray")


def version_text() -> str:
    parts = [f"Python {platform.python_version()}"]
    parts += [f"{name} {version}" for name, version in package_versions(SHOWN).items()]
    return f"wanbatch {__version__} ({', '.join(parts)})"
