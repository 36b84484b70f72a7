"""The README's "Python API" example runs as it is written (in a folder holding `wanbatch init myfilm`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_python_api_example_runs(tmp_path):
    section = README.read_text().split("### Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    subprocess.run([sys.executable, "-m", "wanbatch", "init", "myfilm"], cwd=tmp_path, check=True, timeout=60)
    got = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr
    lines = got.stdout.strip().splitlines()
    assert "0 outputs/from-python/film.mp4" in lines
    assert any(re.fullmatch(r"opening rendered 7 [0-9a-f]{32}", line) for line in lines), lines
    assert (tmp_path / "outputs" / "from-python" / "film.mp4").is_file()
    assert (tmp_path / "wan-cache").is_dir()
