"""The `newsletter` command (click): parse, call the pipeline, map outcomes to exit codes."""

from pipeline.cli.main import cli, main

__all__ = ["cli", "main"]
