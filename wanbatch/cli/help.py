"""`wanbatch --help`: the text Hydra prints through `hydra.help` (conf/wanbatch.yaml), whose parts come from the
`wanbatch_help` resolver registered here, so the recipes, groups and options listed are the installed ones.

    register()                      # before Hydra composes; idempotent
    # conf/wanbatch.yaml: header: ${wanbatch_help:header}
"""

from __future__ import annotations

from omegaconf import OmegaConf

from wanbatch.config.load import CONF_DIR, recipe_names
from wanbatch.version import __version__

USAGE = """\
wanbatch {version}: render whole video projects with the Wan video models.

Usage:
  wanbatch recipe=NAME [OVERRIDES...]            render a recipe: ./recipes/NAME first, else a built-in one
                                                 (recipes: {recipes})
  wanbatch --config-dir DIR [OVERRIDES...]       render your own project, DIR/project.yaml
                                                 (--config-name NAME renders DIR/NAME.yaml)
  wanbatch recipe=NAME dry_run=true              plan, validate and show what is cached; touches nothing
  wanbatch -m recipe=NAME scenes.0.seed=1,2,3    a Hydra sweep; its members share one cache
  wanbatch init DIR                              a starter project (DIR/project.yaml) that renders as it is
  wanbatch cache list|why|prune ...              look into the render cache (wanbatch cache --help)
  wanbatch --version                             wanbatch's version and those of Python, torch, diffusers
  wanbatch --cfg job recipe=NAME                 the composed config (--info recipe=NAME: where it came from)
  eval "$(wanbatch -sc install=bash)"            TAB completion in bash or zsh
                                                 (fish: wanbatch -sc install=fish | source)"""

OVERRIDES = """\
  key=value sets any option, e.g. executor.concurrency=8 cache.dir=/data/wan-cache backend.base_url=URL
  scenes.<i>.<field>=value sets a field of scene i (counted from 0): scenes.1.seed=42 scenes.0.resolution=720P
  backends.<name>.<key>=value configures a backend a scene names (scenes.<i>.backend=<name>)
  hydra.run.dir=PATH puts the run's outputs there (default outputs/<project>/<time>)
  Every option, its type and its default: wanbatch/config/schema.py and backends.py; the composed config:
  wanbatch --cfg job recipe=NAME"""

FOOTER = """\
Exit status:
  0    every scene is done (rendered or served from the cache)
  1    some scene failed; the others are kept and cached, and a rerun renders only the failed ones
  2    the project is invalid: nothing ran, nothing was sent, nothing was cached, no run folder was made
  130  interrupted (Ctrl-C): every finished clip is kept; the next run picks up the rest

Each run folder holds clips/, film.mp4, manifest.json, index.html and wanbatch.log (what the console
did not show: every scene's states, HTTP requests, library warnings). More in README.md."""


def options(group: str) -> list[str]:
    """The options of a config group a user picks from (the `base_*` schemas beside them are not options)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def groups() -> list[str]:
    return sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and any(p.glob("*.yaml")))


def _part(name: str) -> str:
    if name == "header":
        text = USAGE.format(version=__version__, recipes=", ".join(recipe_names()))
    elif name == "footer":
        text = FOOTER
    elif name == "groups":
        text = "\n".join(f"  {g}: {', '.join(options(g))}" for g in groups())
    elif name == "overrides":
        text = OVERRIDES
    else:
        raise ValueError(f"no help part {name!r}")
    # Hydra runs the resolved template through string.Template, where `$` starts a placeholder.
    return text.replace("$", "$$")


def register() -> None:
    if not OmegaConf.has_resolver("wanbatch_help"):
        OmegaConf.register_new_resolver("wanbatch_help", _part)


__all__ = ["groups", "options", "register"]
