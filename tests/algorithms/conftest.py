"""This folder's fixtures live in alg_support.py, a unique module name test files import from."""

from alg_support import *  # noqa: F403
