"""The ``perdure`` command moved to ``perdure.cli``; this name stays for console scripts installed before."""

from .cli import build_parser as _parser
from .cli import entry, main

__all__ = ["_parser", "entry", "main"]

if __name__ == "__main__":  # pragma: no cover - `python -m perdure._cli`, as before
    entry()
