"""Ballast shared library: config, models, db, telemetry, security, resilience."""

from importlib.metadata import version

# One version for the whole product: the VERSION file at the repository root.
__version__ = version("ballast-common")
