"""Shared test helpers: engines a test needs are real; in CI a missing one fails the test instead of skipping."""

from __future__ import annotations

import os

import pytest


def require(available: bool, what: str) -> None:
    """Skip locally with a message naming what is missing; fail under CI=true (no engine is silently skipped)."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing, and CI must run every engine for real", pytrace=False)
    pytest.skip(f"{what} is missing")
