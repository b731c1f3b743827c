"""Log output of every authz command: stderr, ``logging.format`` ``text`` or ``json``.

``json``: every record is one JSON object on one line, ``{"time", "level", "logger", "message"}`` (plus
``exception`` with the traceback); a record carrying ``fields`` (the decision lines of :mod:`authz.decide.record`)
has those members instead of ``message``. Strings are JSON-escaped (``ensure_ascii``), so no value can break the
line. ``text``: ``time level logger: message``, with CR and LF in the message written as ``\\r`` and ``\\n`` so a
value from a request cannot start a line that looks like another record (tracebacks keep their lines).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_HANDLER = "authz-stderr"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """``time level logger: message`` with CR/LF of the message escaped."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = record.message.replace("\r", "\\r").replace("\n", "\\n")
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring); ``time`` is ISO 8601 UTC with milliseconds."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._prefix = ""

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # the date and time of day change once a second
            self._second, self._prefix = second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {"time": self._time(record.created), "level": record.levelname,
                                  "logger": record.name}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=True, separators=(",", ":"), default=str)


def setup_logging(level: str, fmt: str = "text") -> None:
    """Log to stderr at ``level`` in format ``fmt``; calling it again (once the config is read) switches the format.

    Args:
        level: a level name (``debug``, ``info``, ``warning``...); unknown names mean ``info``.
        fmt: ``text`` or ``json`` (``logging.format``).
    """
    # No format of authz shows the thread or process of a record: not looking them up makes every record cheaper.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    handler = next((h for h in root.handlers if h.get_name() == _HANDLER), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER)
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
