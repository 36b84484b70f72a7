"""Only what pyproject.toml cannot say: the package list is found *and* extended by the data packages."""

from pathlib import Path

from setuptools import find_packages, setup


def data_packages(top: str, name: str) -> list[str]:
    """A folder of data and its sub-folders as packages (setuptools ships data only inside packages)."""
    folders = [Path(top), *sorted(p for p in Path(top).rglob("*") if p.is_dir() and p.name != "__pycache__")]
    return [".".join([name, *f.relative_to(top).parts]) for f in folders]


# conf/ and recipes/ sit at the top of the source tree (package-dir in pyproject.toml maps them); the wheel
# carries them inside the package as `wanbatch.conf` and `wanbatch.recipes`, so it works from any folder.
setup(
    packages=[
        *find_packages(include=["wanbatch", "wanbatch.*"]),
        *data_packages("conf", "wanbatch.conf"),
        *data_packages("recipes", "wanbatch.recipes"),
    ]
)
