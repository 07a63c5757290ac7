"""The journal file: what perdure refuses to open (and leaves untouched), permissions, WAL, durability modes, and
the persisted names (tables, columns, step keys) pinned as compatibility data."""

from __future__ import annotations

import gc
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from perdure import Agent, DurableAgent, RunWaiting, UserError
from perdure._ops import approval_key, model_key, tool_key, unknown_key
from perdure.local._journal import Journal
from perdure.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from perdure.models.function import AgentInfo, FunctionModel


def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    turn = sum(isinstance(m, ModelResponse) for m in messages) + 1
    if turn == 1:
        return ModelResponse(parts=[ToolCallPart(tool_name="look", args={"q": "a"}, tool_call_id="c1")])
    if turn == 2:
        return ModelResponse(parts=[ToolCallPart(tool_name="wipe", args={"q": "b"}, tool_call_id="c2")])
    return ModelResponse(parts=[TextPart(content="done")])


def make_agent() -> Agent[None, str]:
    agent: Agent[None, str] = Agent(FunctionModel(answer, model_name="journal-test"), name="journal-test")

    @agent.tool_plain
    def look(q: str) -> str:
        """Look."""
        return q

    @agent.tool_plain(requires_approval=True)
    def wipe(q: str) -> str:
        """Wipe."""
        return q

    return agent


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file in ``directory``: its bytes and mode."""
    return {p.name: (p.read_bytes(), p.stat().st_mode) for p in sorted(directory.iterdir())}


@pytest.fixture
def umask_zero() -> Iterator[None]:
    # With no umask at all, only perdure's own choice can make the files owner-only.
    old = os.umask(0)
    yield
    os.umask(old)


# --- refusals -------------------------------------------------------------------------------------------------


def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"my notes, not a database\n" * 100)
    os.chmod(path, 0o644)
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match="not an SQLite database") as e:
        DurableAgent(make_agent(), journal=path)
    assert "untouched" in str(e.value)
    assert snapshot(tmp_path) == before


def test_an_sqlite_database_of_another_application_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match="another application"):
        DurableAgent(make_agent(), journal=path)
    assert snapshot(tmp_path) == before  # no -wal/-shm appeared, no byte changed


def test_an_sqlite_database_with_another_application_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.commit()
    conn.close()
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match="another application"):
        DurableAgent(make_agent(), journal=path)
    assert snapshot(tmp_path) == before


def test_a_journal_of_a_newer_schema_is_refused_with_a_message_to_upgrade(tmp_path: Path, journal: str) -> None:
    Journal(journal).close()
    conn = sqlite3.connect(journal)
    conn.execute("PRAGMA user_version = 99")  # what a future perdure with a newer schema leaves behind
    conn.close()
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match="upgrade perdure") as e:
        DurableAgent(make_agent(), journal=journal)
    assert "schema version 99" in str(e.value)
    assert snapshot(tmp_path) == before


def test_a_directory_or_an_unreachable_path_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is a directory"):
        DurableAgent(make_agent(), journal=tmp_path)
    (tmp_path / "notes.txt").write_text("a file, not a directory")
    with pytest.raises(UserError, match="cannot open the journal"):
        DurableAgent(make_agent(), journal=tmp_path / "notes.txt" / "perdure.db")


def test_opening_a_journal_again_keeps_this_process_locks(tmp_path: Path, journal: str) -> None:
    """Another process must still see this one's connections after it opens the journal a second time: were the
    file read outside SQLite, closing that descriptor would drop this process's locks (POSIX locks belong to the
    process), and the other process would delete the WAL from under them ("disk I/O error", or worse)."""
    first = DurableAgent(make_agent(), journal=journal)
    with pytest.raises(RunWaiting):
        first.run_sync("go", run_id="mine")
    DurableAgent(make_agent(), journal=journal, durability="normal")  # a second connection in this process
    other = "from perdure.local._journal import Journal; j = Journal({!r}); j.write([(SQL, ())]); j.close()"
    sql = "UPDATE perdure_runs SET updated_at = 1 WHERE run_id = 'mine'"
    subprocess.run([sys.executable, "-c", f"SQL = {sql!r}; " + other.format(journal)], check=True, timeout=60)
    assert Path(f"{journal}-wal").exists() and Path(f"{journal}-shm").exists()  # the other process knew of us
    assert first.get_run_sync("mine").updated_at == 1


def test_a_journal_nobody_holds_any_more_is_closed(journal: str) -> None:
    durable = DurableAgent(make_agent(), journal=journal)
    with pytest.raises(RunWaiting):
        durable.run_sync("go", run_id="r")
    assert Path(f"{journal}-wal").exists()
    del durable
    gc.collect()
    # The last connection closed: SQLite checkpointed the WAL into the file and removed it.
    assert not Path(f"{journal}-wal").exists() and not Path(f"{journal}-shm").exists()
    assert DurableAgent(make_agent(), journal=journal).get_run_sync("r").status == "waiting"


# --- a new journal ------------------------------------------------------------------------------------------


def test_a_new_journal_is_owner_only_with_its_wal_and_shm(tmp_path: Path, umask_zero: None) -> None:
    path = tmp_path / "sub" / "new.db"
    durable = DurableAgent(make_agent(), journal=path)
    with pytest.raises(RunWaiting):  # writes: the -wal and -shm files exist while the journal is open
        durable.run_sync("hi", run_id="r1")
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["new.db", "new.db-shm", "new.db-wal"]
    for name in files:
        assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name


def test_an_existing_journal_keeps_the_permissions_its_owner_gave_it(tmp_path: Path, journal: str) -> None:
    Journal(journal).close()
    os.chmod(journal, 0o640)  # e.g. shared with a group of workers on purpose
    Journal(journal).close()
    assert stat.S_IMODE(os.stat(journal).st_mode) == 0o640


def pragma(durable: DurableAgent[Any, Any], name: str) -> Any:
    return durable._journal.query(f"PRAGMA {name}")[0][0]


def test_wal_mode_and_synchronous_full_by_default(journal: str) -> None:
    durable = DurableAgent(make_agent(), journal=journal)
    assert pragma(durable, "journal_mode") == "wal"
    assert pragma(durable, "synchronous") == 2  # FULL: a committed step survives power loss


def test_durability_normal_is_synchronous_normal(journal: str) -> None:
    durable = DurableAgent(make_agent(), journal=journal, durability="normal")
    assert pragma(durable, "journal_mode") == "wal"
    assert pragma(durable, "synchronous") == 1


def test_an_invalid_durability_is_a_user_error(journal: str) -> None:
    with pytest.raises(UserError, match="durability must be 'full' or 'normal'"):
        DurableAgent(make_agent(), journal=journal, durability="fast")  # type: ignore[arg-type]
    assert not Path(journal).exists()


# --- persisted names ----------------------------------------------------------------------------------------

RUNS_COLUMNS = [
    "run_id",
    "agent",
    "fingerprint",
    "status",
    "input",
    "output",
    "error",
    "usage",
    "owner",
    "lease_expires",
    "cancel_requested",
    "attempts",
    "trace_context",
    "created_at",
    "updated_at",
    "finished_at",
]
STEPS_COLUMNS = [
    "run_id",
    "key",
    "seq",
    "kind",
    "describe",
    "status",
    "result",
    "payload",
    "attempt",
    "started_at",
    "finished_at",
    "input_tokens",
    "output_tokens",
]


def test_table_and_column_names_are_pinned(journal: str) -> None:
    DurableAgent(make_agent(), journal=journal)
    conn = sqlite3.connect(journal)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"perdure_runs", "perdure_steps"}
    assert [r[1] for r in conn.execute("PRAGMA table_info(perdure_runs)")] == RUNS_COLUMNS
    assert [r[1] for r in conn.execute("PRAGMA table_info(perdure_steps)")] == STEPS_COLUMNS
    # The primary key of a step is its run and its key: step identity is by meaning, not position.
    assert [r[1] for r in conn.execute("PRAGMA table_info(perdure_steps)") if r[5]] == ["run_id", "key"]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert conn.execute("PRAGMA application_id").fetchone()[0] == 0x50455244
    conn.close()


def test_step_key_formats_are_pinned(journal: str) -> None:
    assert model_key(3) == "turn/3/model"
    assert tool_key(3, "call_1") == "turn/3/tool/call_1"
    assert approval_key(3, "call_1") == "turn/3/approval/call_1"
    assert unknown_key(3, "call_1") == "turn/3/unknown/call_1"

    durable = DurableAgent(make_agent(), journal=journal)
    with pytest.raises(RunWaiting):
        durable.run_sync("go", run_id="keys")
    durable.approve_sync("keys", "c2")
    durable.resume_sync("keys")
    conn = sqlite3.connect(journal)
    rows = conn.execute("SELECT key, kind FROM perdure_steps WHERE run_id = 'keys' ORDER BY seq").fetchall()
    conn.close()
    assert rows == [
        ("turn/1/model", "model"),
        ("turn/1/tool/c1", "tool"),
        ("turn/2/model", "model"),
        ("turn/2/approval/c2", "wait"),
        ("turn/2/tool/c2", "tool"),
        ("turn/3/model", "model"),
    ]


def test_a_journal_damaged_in_the_middle_is_one_clear_error_and_is_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    durable = DurableAgent(make_agent(), journal=path)
    for i in range(200):  # enough rows that the step table spans many pages
        with pytest.raises(RunWaiting):
            durable.run_sync("go " + "x" * 200, run_id=f"r{i}")
    durable._journal.query("PRAGMA wal_checkpoint(TRUNCATE)")
    del durable
    gc.collect()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    for offset in range(2 * page, len(data) - page):  # trash every page but the first (header, schema) and last
        data[offset] = 0xA5
    path.write_bytes(bytes(data))
    before = path.read_bytes()
    root = str(Path(__file__).parents[2])
    code = (
        f"import sys; sys.path.insert(0, {root!r}); from tests.local.test_journal import make_agent; "
        "from perdure import DurableAgent, UserError\n"
        "try:\n"
        f"    DurableAgent(make_agent(), journal={str(path)!r}).run_sync('go', run_id='r150')\n"
        "except UserError as e:\n"
        "    print('USERERROR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "USERERROR" in out.stdout, out.stdout + out.stderr
    assert "is damaged" in out.stdout and "perdure changed nothing" in out.stdout and ".recover" in out.stdout
    assert "Traceback" not in out.stderr
    assert path.read_bytes() == before
