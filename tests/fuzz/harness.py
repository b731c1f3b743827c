"""Coverage-guided fuzzing of authz with atheris (libFuzzer for Python), for runs longer than the test suite's.

    make fuzz                                   # every target for FUZZ_SECONDS (default 60) each
    python -m tests.fuzz.harness check .run/fuzz/check tests/fuzz/corpus/check -max_total_time=600
    python -m tests.fuzz.harness --replay       # run the seed corpus once, without atheris (the suite does too)
    python -m tests.fuzz.harness --write-corpus # rewrite tests/fuzz/corpus/ from the seeds

The targets and their properties are in :mod:`tests.fuzz.targets`; only the ``authz`` package is instrumented for
coverage (instrumenting every loaded module takes minutes). A failed property raises, and libFuzzer saves the input
under ``.run/fuzz/`` (``crash-...``); replay one with ``python -m tests.fuzz.harness TARGET .run/fuzz/crash-...``.

atheris installs from a wheel on Linux x86-64 with CPython 3.11 (``pip install -e '.[fuzz]'``, what ``make fuzz``
does); elsewhere pip builds it from source and needs clang with libFuzzer (``apt-get install clang``, or
``CLANG_BIN=/path/to/clang pip install atheris``).
"""

from __future__ import annotations

import sys

TARGETS = ("bearer", "path", "jws", "check")


def main(argv: list[str]) -> int:
    """``python -m tests.fuzz.harness TARGET [libFuzzer args] | --replay | --write-corpus``; the exit status."""
    if argv[1:2] == ["--write-corpus"]:
        from tests.fuzz.targets import write_corpus  # noqa: PLC0415

        write_corpus()
        return 0
    if argv[1:2] == ["--replay"]:
        from tests.fuzz.targets import replay  # noqa: PLC0415

        print(f"replayed {replay()} seed inputs without a failure")
        return 0
    if len(argv) < 2 or argv[1] not in TARGETS:
        print(f"usage: python -m tests.fuzz.harness {{{','.join(TARGETS)}}} [libFuzzer options and corpus dirs] "
              "| --replay | --write-corpus", file=sys.stderr)
        return 2
    import atheris  # noqa: PLC0415 - only long runs need it (pip install -e '.[fuzz]')

    with atheris.instrument_imports(include=["authz"]):
        from tests.fuzz.targets import Harness  # noqa: PLC0415 - the authz modules load here, instrumented

    target = getattr(Harness(), argv[1])
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
