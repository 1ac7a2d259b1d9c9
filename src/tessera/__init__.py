"""Tessera: faster, cheaper, dependable neural-network training with a model you own."""

__version__ = "0.1.0"
