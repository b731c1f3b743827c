"""``authz serve`` in a subprocess, for tests of the server, the process model and end-to-end flows."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from authz.dev.procs import ManagedProcess
from authz.ops.health import wait_serving


class AuthzProcess:
    """``authz serve`` in a subprocess with a config file written from a settings document."""

    def __init__(self, doc: dict[str, Any], tmp: Path) -> None:
        # A test that replaces the whole server section of settings_dict gets its "no drain grace" too.
        doc["server"].setdefault("drain_grace", 0)
        self.doc = doc
        self.config = tmp / "authz.yaml"
        self.config.write_text(yaml.safe_dump(doc), encoding="utf-8")
        self.listen = doc["server"]["listen"]
        self.port = int(self.listen.rsplit(":", 1)[1])
        self.proc = ManagedProcess(
            [sys.executable, "-m", "authz", "serve", "--config", str(self.config), "--log-level", "info"],
            name="authz", log_dir=tmp,
        )

    def start(self) -> AuthzProcess:
        self.proc.start()
        wait_serving(self.listen, timeout=20)
        return self

    def stop(self) -> int | None:
        return self.proc.stop()

    def log_text(self) -> str:
        return self.proc.log_text()
