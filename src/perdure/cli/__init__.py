"""The ``perdure`` command: demo, runs list|show|resume|cancel|prune, approve, worker.

Built on the ``RunAdmin`` port (``perdure.durable.ports``): ``_engines`` chooses the engine's admin from the flags
(``--journal``, ``--dbos``, ``--temporal``, ``--prefect``), ``_parse`` holds the command line, ``_render`` shows
run records (rich for people, ``--json`` for scripts), ``_commands`` does the work.
"""

from ._commands import entry, main
from ._parse import build_parser

__all__ = ["build_parser", "entry", "main"]
