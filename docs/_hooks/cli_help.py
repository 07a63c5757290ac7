"""MkDocs hook: ``<!-- cli-help: runs list -->`` on a page becomes the output of ``perdure runs list --help``.

The CLI reference is generated from the parser itself, so it cannot drift from the command.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

_MARK = re.compile(r"^<!-- cli-help:(?P<command>[^>]*)-->$", re.M)
WIDTH = "100"


def cli_help(command: str) -> str:
    """``perdure <command> --help``, formatted at a fixed width."""
    from perdure.cli import build_parser as _parser

    parser = _parser()
    for word in command.split():
        parser = _subparser(parser, word)
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH  # argparse wraps at the terminal's width; the page must not depend on it
    try:
        return parser.format_help()
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            sub: argparse.ArgumentParser = action.choices[name]
            return sub
    raise ValueError(f"perdure has no command {name!r} under {parser.prog!r}")


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return _MARK.sub(lambda m: f"```text\n{cli_help(m.group('command').strip())}```", markdown)
