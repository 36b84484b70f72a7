"""`wanbatch --version`: wanbatch's version, and those of the parts that decide what a render looks like."""

from __future__ import annotations

import platform
from importlib import metadata

from wanbatch.version import __version__

# Read from the installed packages' metadata: nothing heavy is imported to say its version.
SHOWN = ("torch", "diffusers", "transformers", "xfuser", "ray")


def version_text() -> str:
    parts = [f"Python {platform.python_version()}"]
    for name in SHOWN:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return f"wanbatch {__version__} ({', '.join(parts)})"
