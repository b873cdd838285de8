"""A shim for tools that still call setup.py: every setting is in pyproject.toml."""

from setuptools import setup

setup()
