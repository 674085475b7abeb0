"""The command line: `lipstream` (console script `stream.cli:console`) and `python -m stream.cli`."""
from .main import console, main

__all__ = ["console", "main"]
