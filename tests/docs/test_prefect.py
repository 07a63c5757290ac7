"""docs/engines/prefect.md, against the session's Prefect server.

app.py and approvals.py run in this process, with Prefect's settings pointed at the server (Prefect reads its
environment once, at import); crash.py runs in two processes, the first killed, with PREFECT_API_URL set as a
reader sets it. The crash's first process starts before the other examples run, to use the machine's two cores.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from ._run import EXAMPLES, run_example, start_process, stop_process


@pytest.fixture
def prefect(prefect_api_url: str) -> Iterator[dict[str, str]]:
    from prefect.settings import PREFECT_API_URL, PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_api_url, PREFECT_LOGGING_TO_API_ENABLED: False}):
        yield {"PREFECT_API_URL": prefect_api_url}


def test_smallest_program_approvals_and_recovery(
    prefect: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    crash_dir = tmp_path_factory.mktemp("prefect-crash")
    first = start_process([sys.executable, str(EXAMPLES / "prefect_engine/crash.py")], cwd=crash_dir, env=prefect)

    run_example("prefect_engine/app.py", cwd=tmp_path_factory.mktemp("prefect-app"))
    run_example("prefect_engine/approvals.py", cwd=tmp_path_factory.mktemp("prefect-approvals"))

    code, out, err = stop_process(first, sig=0, timeout=120)  # it kills itself inside charge_card
    assert code == -9, out + err
    run_example("prefect_engine/crash.py", "recover", cwd=crash_dir, env=prefect, fresh_process=True)
