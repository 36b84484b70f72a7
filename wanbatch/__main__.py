"""`python -m wanbatch`: the console script."""

from wanbatch.cli import main

main()
