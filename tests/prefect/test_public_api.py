"""The Prefect adapter's public surface is pinned; a missing extra says how to install it."""

from __future__ import annotations

import subprocess
import sys

import perdure.prefect
from perdure._exceptions import install_command


def test_all_is_pinned() -> None:
    assert perdure.prefect.__all__ == ["PrefectAdmin", "PrefectAgent", "TaskConfig", "admin"]


def test_a_missing_extra_names_the_install_command() -> None:
    code = (
        "import sys; sys.modules['prefect'] = None\n"
        "try:\n"
        "    import perdure.prefect\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, '|', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("MissingExtra |"), out
    assert install_command("prefect") in out  # pip install ... perdure[prefect] from where perdure came from
