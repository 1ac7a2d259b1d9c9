"""This folder's fixtures live in estimate_support.py, a unique module name test files import from."""

from estimate_support import *  # noqa: F403
