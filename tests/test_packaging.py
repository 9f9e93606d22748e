"""Packaging: pyproject.toml's metadata is what pip installed, with one version string."""
import importlib.metadata
import tomllib
from pathlib import Path

import monoai_tornado

ROOT = Path(__file__).resolve().parent.parent


def test_the_installed_version_is_the_package_version() -> None:
    # `pip show monoai_tornado` and `monoai-tornado --version` tell the same version: the one
    # in monoai_tornado/__init__.py, which pyproject.toml reads (setup.py has none of its own).
    assert importlib.metadata.version("monoai_tornado") == monoai_tornado.__version__
    assert "version" not in Path(ROOT, "setup.py").read_text(encoding="utf-8")


def test_every_extra_of_pyproject_is_installable_by_name() -> None:
    # `pip install -e '.[redis]'` and the README's other extras name extras the metadata has.
    declared = tomllib.loads(Path(ROOT, "pyproject.toml").read_text(encoding="utf-8"))
    extras = declared["project"]["optional-dependencies"]
    readme_extras = {"redis", "fast", "client", "monoai", "test"}
    assert readme_extras <= set(extras)
    installed = importlib.metadata.metadata("monoai_tornado").get_all("Provides-Extra") or []
    assert readme_extras <= set(installed)
    assert importlib.metadata.entry_points(group="console_scripts", name="monoai-tornado")
