"""`python -m wanbatch.cli`: the console script, for environments without it on PATH."""

from wanbatch.cli import console

console()
