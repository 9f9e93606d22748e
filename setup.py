"""The metadata is in pyproject.toml (PEP 621): this shim is for tools that still call setup.py."""
from setuptools import setup

setup()
