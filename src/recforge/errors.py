"""Errors meant for the person at the keyboard: the message is one complete line."""

from __future__ import annotations

__all__ = ["RecforgeError", "UnreadableSourceError"]


class RecforgeError(Exception):
    """An expected failure (bad input, missing model, ...) with a message fit to print as is."""


class UnreadableSourceError(RecforgeError):
    """A source file cannot be read at all: missing, binary, or not in the expected format."""
