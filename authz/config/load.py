"""Reading a config file: YAML, environment overrides, validation, and every error with its YAML path.

``load_config(path)`` reads the file, applies the environment overrides (``AUTHZ_LISTEN``, ``AUTHZ_HTTP_LISTEN``,
``AUTHZ_REDIS_URL``, ``AUTHZ_ADMIN_TOKEN``: :data:`authz.config.base.ENV_OVERRIDES`) and validates everything; it raises :class:`ConfigError` listing every problem with its
YAML path (``key_managers[0].issuer: field required``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from authz.config.base import ENV_OVERRIDES
from authz.config.settings import Settings, raw_duplicates, serving_errors


class ConfigError(Exception):
    """The configuration is invalid.

    Attributes:
        errors: one line per problem, ``<yaml path>: <reason>``.
    """

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _format_validation_error(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        msg = msg[:1].lower() + msg[1:]
        # Errors raised by model validators carry their own path already, one problem per line.
        if ": " in msg and msg.startswith(("key_managers[", "apis[", "headers.", "backend_jwt.")):
            lines.extend(msg.splitlines())
        else:
            lines.append(f"{_format_loc(loc)}: {msg}")
    return lines


def parse_config(data: Any, env: Mapping[str, str] | None = None) -> Settings:
    """Validate an already-parsed YAML document.

    Args:
        data: the YAML document (a mapping).
        env: environment for the overrides of :data:`authz.config.base.ENV_OVERRIDES` (``AUTHZ_LISTEN``,
            ``AUTHZ_HTTP_LISTEN``, ``AUTHZ_REDIS_URL``, ``AUTHZ_ADMIN_TOKEN``; default: none applied).
    Returns:
        The validated :class:`Settings`.
    Raises:
        ConfigError: with one ``path: reason`` line per problem.
    """
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): expected a mapping, got {type(data).__name__}"])
    data = dict(data)
    env = env or {}
    for variable, section, key in ENV_OVERRIDES:
        if env.get(variable):
            current = data.get(section)
            if current is None or isinstance(current, dict):
                data[section] = {**(current or {}), key: env[variable]}
            # else: the section is not a mapping; validation reports it.
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        errors = _format_validation_error(exc)
        errors += [line for line in raw_duplicates(data) if line not in errors]
        raise ConfigError(errors) from None


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Settings:
    """Read, parse and validate a YAML config file.

    Args:
        path: the YAML file.
        env: environment for the overrides; defaults to ``os.environ``.
    Returns:
        The validated :class:`Settings`.
    Raises:
        ConfigError: unreadable file, YAML syntax error (with line and column), YAML nested too deeply for the
            parser, or invalid fields.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{p}: cannot read: {exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{p}: {where}invalid YAML: {problem}"]) from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise ConfigError([f"{p}: invalid YAML: nested too deeply"]) from None
    return parse_config(data, os.environ if env is None else env)


def load_servable(path: str | os.PathLike[str]) -> Settings:
    """:func:`load_config` plus what ``authz serve`` needs beyond a valid file (:func:`serving_errors`): the
    check of ``authz check-config`` and of a config reload.

    Raises:
        ConfigError: every problem, one ``path: reason`` line each.
    """
    settings = load_config(path)
    problems = serving_errors(settings)
    if problems:
        raise ConfigError(problems)
    return settings
