"""Installing perdure the way the README says, into a project of one's own: from a built wheel (``make dist``) or
from a checkout, with ``pip install "perdure[openai] @ file://..."`` (perdure is on no package index).

The wheel is built from this checkout and installed into a new virtual environment (its dependencies come from
the machine's package index, as a reader's would); an offline example of the documentation then runs there, from
a folder of its own, importing the installed perdure and not this checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _env() -> dict[str, str]:
    """This process's environment without what would point a child at this checkout or at the suite's venv."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "OPENAI_API_KEY", "OPENAI_BASE_URL", "PERDURE_JOURNAL")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(argv: Sequence[str | Path], cwd: Path, *, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, argv))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `make dist` builds (``python -m build``), built from this checkout into a folder of the test's."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", out, ROOT], cwd=out)
    (built,) = out.glob("perdure-*-py3-none-any.whl")
    return built


@pytest.fixture(scope="module")
def project(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another project's virtual environment, with ``perdure[openai]`` installed from the wheel."""
    home = tmp_path_factory.mktemp("project")
    venv.create(home / ".venv", with_pip=True)
    _run([home / ".venv/bin/python", "-m", "pip", "install", "-q", f"perdure[openai] @ {wheel.as_uri()}"], cwd=home)
    return home


def test_the_wheel_holds_the_package_and_its_command(wheel: Path) -> None:
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "perdure/py.typed" in names and "perdure/__init__.py" in names
    assert {n.split("/")[0] for n in names} == {"perdure", wheel.name.removesuffix("-py3-none-any.whl") + ".dist-info"}
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "perdure = perdure.cli:entry" in entry_points


def test_an_offline_example_runs_in_the_other_project(project: Path, tmp_path: Path) -> None:
    python = project / ".venv/bin/python"
    where = _run([python, "-c", "import perdure, openai; print(perdure.__file__)"], cwd=tmp_path).stdout
    assert Path(where.strip()).is_relative_to(project / ".venv"), where  # the installed perdure, not the checkout
    # The getting-started guide's durable run, saved in a folder of the reader's with the modules it imports.
    for name in ("durable_run.py", "shop.py", "bank.py", "offline_model.py"):
        shutil.copy(EXAMPLES / "getting_started" / name, tmp_path)
    out = _run([python, "durable_run.py"], cwd=tmp_path).stdout
    assert "Charged $42.00 for order 42 and emailed the receipt.\ncharges for order-42: 1\n" in out
    listed = _run([project / ".venv/bin/perdure", "runs", "list"], cwd=tmp_path).stdout
    assert "order-42" in listed  # the command the wheel installs reads the journal the example wrote


def test_a_missing_extra_names_a_command_that_installs_it(project: Path, wheel: Path, tmp_path: Path) -> None:
    python = project / ".venv/bin/python"
    code = "import perdure.temporal"
    done = subprocess.run([python, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    command = f'pip install "perdure[temporal] @ {wheel.as_uri()}"'
    assert done.stderr.rstrip().endswith(f"extra: {command}"), done.stderr
    # The command works as printed (--dry-run: resolved from the wheel and the index, nothing installed).
    resolved = _run([python, "-m", "pip", "install", "--dry-run", "perdure[temporal] @ " + wheel.as_uri()], tmp_path)
    assert "temporalio" in resolved.stdout


def test_a_checkout_installs_the_same_way(project: Path, tmp_path: Path) -> None:
    """``pip install "perdure[openai] @ file:///path/to/perdure"``: pip builds the checkout (hatchling)."""
    requirement = f"perdure[openai] @ {ROOT.as_uri()}"
    resolved = _run([project / ".venv/bin/python", "-m", "pip", "install", "--dry-run", requirement], tmp_path)
    assert "perdure-" in resolved.stdout, resolved.stdout
