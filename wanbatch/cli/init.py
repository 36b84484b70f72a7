"""`wanbatch init DIR`: a starter project (project.yaml with two scenes, and a README line) that renders as it is,
on the preview backend, so a first run needs no GPU, no model download and no API key."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

PROJECT = """\
# A wanbatch project. Render it (from any folder) with:   wanbatch --config-dir {folder}
# Try it without rendering:                               wanbatch --config-dir {folder} dry_run=true
# Every scene field and option is in wanbatch's README; `wanbatch --help` lists the commands.
defaults:
  - wanbatch                     # wanbatch's config groups: backend, cache, executor, stitch, encode
  # The preview backend draws an animatic (title cards, pans, crossfades) without a model. For real renders
  # name another here, or on the command line (`backend=diffusers`: a local GPU with `pip install
  # 'wanbatch[local]'`; `backend=novita_wan21_t2v`: a remote API, its key in $NOVITA_API_KEY).
  - override backend: preview
  - _self_

project:
  name: {name}
  defaults: {{resolution: 480P, duration: 2, fps: 16}}   # applied to every scene that does not set them

scenes:
  - id: opening
    prompt: A lighthouse on a cliff at dawn, waves breaking on the rocks below.
    seed: 42                     # -1 picks a seed once, at plan time, and records it
  - id: night
    prompt: The lighthouse beam sweeps over a calm sea under the stars.
    seed: 7
    transition: {{type: crossfade, duration: 0.5}}
"""

README = """\
# {name}

A [wanbatch](https://pypi.org/project/wanbatch/) project: `wanbatch --config-dir {folder}` renders `project.yaml` into
`outputs/{name}/` (clips, `film.mp4`, `manifest.json`, `index.html`); rendered scenes are cached, so a rerun renders
only what changed.
"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="wanbatch init", description=__doc__)
    parser.add_argument("dir", type=Path, help="the folder of the new project (created if missing)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing project.yaml and README.md")
    args = parser.parse_args(argv)
    folder: Path = args.dir
    written = [folder / "project.yaml", folder / "README.md"]
    existing = [p for p in written if p.exists()]
    if existing and not args.force:
        print(
            f"error: `init` = {str(folder)!r} is not allowed; it already holds {existing[0].name} "
            "(pass --force to overwrite it, or pick a new folder)",
            file=sys.stderr,
        )
        return 2
    if folder.exists() and not folder.is_dir():
        print(f"error: `init` = {str(folder)!r} is not allowed; it is a file, not a folder", file=sys.stderr)
        return 2
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", folder.resolve().name).strip("._") or "film"
    shown = str(folder) if " " not in str(folder) else f"'{folder}'"
    folder.mkdir(parents=True, exist_ok=True)
    written[0].write_text(PROJECT.format(name=name, folder=shown))
    written[1].write_text(README.format(name=name, folder=shown))
    print(f"wrote {written[0]} and {written[1]}; render it with: wanbatch --config-dir {shown}")
    return 0
