"""The ``authz`` command run in this process: the same ``main`` the console script calls, its exit status and
its stdout/stderr captured. Much faster than a subprocess per call; tests of the console entry point itself
(``python -m authz``) still run it as a subprocess."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from unittest import mock

from authz.ops.cli import main

CLEAN_ENV = ("AUTHZ_LISTEN", "AUTHZ_HTTP_LISTEN", "AUTHZ_REDIS_URL", "AUTHZ_CONFIG", "AUTHZ_ADMIN_TOKEN")
"""Environment overrides a test must not inherit from the shell that runs the suite."""


@contextlib.contextmanager
def _environment(env: Mapping[str, str] | None) -> Iterator[None]:
    values = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    values.update(env or {})
    with mock.patch.dict(os.environ, values, clear=True):
        yield


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``authz ARGS...`` in-process.

    Args:
        args: the command line after ``authz``.
        env: extra environment variables (the :data:`CLEAN_ENV` ones are removed first).
    Returns:
        A ``CompletedProcess`` with the exit status (``SystemExit`` codes included: 2 for a usage error) and the
        captured output.
    """
    out, err = io.StringIO(), io.StringIO()
    with _environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["authz", *args], code, out.getvalue(), err.getvalue())


Run = Callable[..., subprocess.CompletedProcess[str]]


def registry_cli(config: Path) -> Run:
    """``run(*args, ok=True)``: ``authz registry --config CONFIG *args`` in-process (:func:`run_cli`); with ``ok``,
    asserts exit status 0. A traceback in the output fails the test."""

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = run_cli("registry", "--config", str(config), *args)
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
        if ok:
            assert result.returncode == 0, result.stderr
        return result

    return run
