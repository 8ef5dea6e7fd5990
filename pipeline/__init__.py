"""Newsletter and feed publishing pipeline for a clinic's health journal."""

__version__ = "0.1.0"
