"""``python -m perdure``: the ``perdure`` command."""

from .cli import entry

entry()
