"""README.md: the two commands come first, and its Python example runs as written, offline and with a real model.

The example is examples/getting_started/quickstart.py, word for word (the docs' home page and the embedded engine's
page include that file): test_getting_started.py runs it with the real OpenAI client against the fake server,
test_blocks.py in an empty folder with no key.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from ._run import EXAMPLES, ROOT
from .test_blocks import reader_env

README = (ROOT / "README.md").read_text()


def fenced(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, re.M | re.S)


def test_the_two_commands_come_first() -> None:
    first_block = re.search(r"^```(\w*)\n(.*?)^```", README, re.M | re.S)
    assert first_block is not None and first_block.group(1) == "bash"
    assert [line.split()[:2] for line in first_block.group(2).splitlines()] == [["make", "demo"], ["make", "test"]]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_the_example_is_the_quickstart() -> None:
    (code,) = fenced("python")
    assert code == (EXAMPLES / "getting_started" / "quickstart.py").read_text()


def test_the_example_runs_offline_and_again(tmp_path: Path) -> None:
    """No key: TestModel. Run again with the same run_id: the recorded result, nothing executed."""
    (code,) = fenced("python")
    (tmp_path / "quickstart.py").write_text(code)
    outputs = [
        subprocess.run(
            [sys.executable, "quickstart.py"],
            cwd=tmp_path,
            env=reader_env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for _ in range(2)
    ]
    assert outputs == ['{"charge_card": "charged 0 cents"}\n'] * 2
    assert (tmp_path / "perdure.db").exists()  # "journal: ./perdure.db"
