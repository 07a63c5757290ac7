"""Running the documentation's examples the way a reader does, and checking what the pages say they print.

An example runs in this process (``runpy``, fast) unless it needs a process of its own (``fresh_process=True``):
examples that configure process-wide state (an OpenTelemetry provider, DBOS, Prefect settings) or that are killed.
Either way it runs as ``python examples/<path> [args]`` would: ``__main__``, its folder first on ``sys.path``, in
the working directory given.

A page shows what an example prints in a block preceded by ``<!-- output: examples/<path> [args] -->``;
``run_example`` checks every such block against the real output.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"

_OUTPUT_MARK = re.compile(r"^<!-- output: (examples/\S+)((?: [^>]*?)?) -->\n```[^\n]*\n(.*?)^```", re.M | re.S)


def documented_outputs() -> list[tuple[Path, str, tuple[str, ...], str]]:
    """Every output block of the pages: (page, example path, args, text)."""
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        for m in _OUTPUT_MARK.finditer(page.read_text()):
            found.append((page, m.group(1), tuple(m.group(2).split()), m.group(3)))
    return found


def check_documented_output(path: str, args: tuple[str, ...], output: str) -> int:
    """Compare the real output with every block that documents it; returns how many blocks were checked."""
    checked = 0
    for page, example, documented_args, text in documented_outputs():
        if example == path and documented_args == args:
            assert output == text, (
                f"{page.relative_to(ROOT)} shows another output for `python {path} {' '.join(args)}`:\n"
                f"--- documented\n{text}--- actual\n{output}"
            )
            checked += 1
    return checked


def run_example(
    path: str,
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    fresh_process: bool = False,
    returncode: int = 0,
    timeout: float = 60,
) -> str:
    """Run ``examples/<path>`` with ``args`` in ``cwd``; its stdout (checked against the pages that show it)."""
    script = EXAMPLES / path
    assert script.is_file(), f"no example {script}"
    if fresh_process:
        proc = subprocess.run(
            [sys.executable, str(script), *args],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == returncode, (
            f"python {path} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
        output = proc.stdout
    else:
        assert returncode == 0, "only an example in a fresh process can be expected to die"
        output = _run_here(script, args, cwd, env or {})
    if returncode == 0:  # what a killed process printed is no page's business
        check_documented_output(f"examples/{path}", args, output)
    return output


def _run_here(script: Path, args: tuple[str, ...], cwd: Path, env: Mapping[str, str]) -> str:
    saved_argv, saved_path, saved_cwd = sys.argv, list(sys.path), os.getcwd()
    saved_env = {k: os.environ.get(k) for k in env}
    modules = set(sys.modules)
    buffer = io.StringIO()
    sys.argv = [str(script), *args]
    sys.path.insert(0, str(script.parent))
    os.environ.update(env)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(buffer):
            try:
                runpy.run_path(str(script), run_name="__main__")
            except SystemExit as e:
                assert e.code in (None, 0), f"{script.name} exited with {e.code}:\n{buffer.getvalue()}"
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        sys.path[:] = saved_path
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        # The examples' own modules (shop, bank...) are imported afresh by the next example that needs them.
        for name in set(sys.modules) - modules:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if file.startswith(str(EXAMPLES)):
                del sys.modules[name]
    return buffer.getvalue()


def perdure(*args: str, cwd: Path) -> str:
    """Run ``perdure <args>`` in this process (the CLI's own ``main``), in ``cwd``; its stdout. It must succeed."""
    from perdure._cli import main

    saved = os.getcwd()
    buffer = io.StringIO()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(io.StringIO()) as err:
            code = main(list(args))
    finally:
        os.chdir(saved)
    assert code == 0, f"perdure {' '.join(args)} exited {code}: {err.getvalue()}"
    return buffer.getvalue()


def start_process(argv: list[str], *, cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """A long-running command (a worker), with its output readable line by line."""
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_process(proc: subprocess.Popen[str], sig: int = 15, timeout: float = 30) -> tuple[int, str, str]:
    """Send ``sig`` (SIGTERM by default; 0: none, wait for the process to end); the exit code and the output."""
    if sig and proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args} did not stop on signal {sig}:\n{out}\n{err}") from None
    return proc.returncode, out, err


def run_concurrently(*runs: tuple[str, tuple[str, ...], dict[str, object]]) -> list[str]:
    """Run examples that need processes of their own side by side (``(path, args, run_example options)``): the
    machine has more than one core, and each process spends most of its time importing."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        futures = [
            pool.submit(run_example, path, *args, fresh_process=True, **options)  # type: ignore[arg-type]
            for path, args, options in runs
        ]
        return [f.result() for f in futures]
