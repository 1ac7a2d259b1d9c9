"""Fixtures for these tests live in estimate_support.py (a unique module name to import)."""

from estimate_support import *  # noqa: F403
