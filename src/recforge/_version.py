"""recforge's version, on the ground floor so every part can name it."""

__version__ = "0.1.0"
