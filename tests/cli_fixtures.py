"""Run the `wanbatch` console script as a user does: a subprocess in a folder of their own, output to pipes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

# The console script installed beside this interpreter (the venv's), else the one on PATH, else `python -m`.
_BESIDE = Path(sys.executable).parent / "wanbatch"
_ON_PATH = shutil.which("wanbatch")
SCRIPT = [str(_BESIDE)] if _BESIDE.is_file() else [_ON_PATH] if _ON_PATH else [sys.executable, "-m", "wanbatch"]


def wanbatch(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`wanbatch ARGS...` in `cwd`, stdout and stderr captured (plain mode: no terminal)."""
    full_env = {**os.environ, "PATH": f"{Path(SCRIPT[0]).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    full_env.pop("HYDRA_FULL_ERROR", None)
    full_env.update(env or {})
    return subprocess.run([*SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


def listing(path: Path) -> list[str]:
    """Every file and folder under `path` (hidden ones too), to assert that a command left it as it was."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []
