"""``python -m perdure.cli``: the ``perdure`` command."""

from . import entry

entry()
