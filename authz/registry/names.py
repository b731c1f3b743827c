"""Messages for a name that names nothing: what exists, and a did-you-mean for near misses (difflib)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from authz.model import Application

MAX_LISTED = 20
"""At most this many existing names are listed in a message; the rest are counted."""


def near_misses(name: str, candidates: Sequence[str], n: int = 3) -> list[str]:
    """The candidates closest to ``name`` (case-insensitive, :func:`difflib.get_close_matches`, cutoff 0.6).

    Args:
        name: what was asked for.
        candidates: the names that exist.
        n: at most this many.
    Returns:
        Candidates, best first, each once, in their own spelling.
    """
    by_folded: dict[str, str] = {}
    for candidate in candidates:
        by_folded.setdefault(candidate.casefold(), candidate)
    return [by_folded[m] for m in difflib.get_close_matches(name.casefold(), list(by_folded), n=n, cutoff=0.6)]


def unknown(message: str, name: str, candidates: Sequence[str], listed: Sequence[str], kind: str,
            *, hint: str = "", guesses: Sequence[str] | None = None) -> str:
    """``message``, then a did-you-mean for near misses and the existing names.

    Args:
        message: the refusal, e.g. ``unknown API id 'orders-v2'``.
        name: the name that matched nothing.
        candidates: every name it could have meant (e.g. applications' names and IDs).
        listed: the names to list (e.g. applications' names), in order.
        kind: the plural noun of the listing (``configured``, ``applications``).
        hint: where to see them all when the list is cut (e.g. ``authz registry app list``).
        guesses: what to suggest instead of the near misses (e.g. the ID of an API named ``name``).
    Returns:
        e.g. ``unknown API id 'orders-v2'; did you mean 'orders-v1'? configured: orders-v1, payments-v1``, or
        ``...; there are no applications`` when ``listed`` is empty.
    """
    parts = [message]
    guesses = [g for g in (near_misses(name, candidates) if guesses is None else guesses) if g != name]
    if guesses:
        quoted = [repr(g) for g in guesses]
        either = f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
        parts.append(f"; did you mean {either}?")
    if not listed:
        parts.append(f"; there are no {kind}" if kind != "configured" else "; none configured")
    else:
        shown = ", ".join(listed[:MAX_LISTED])
        more = len(listed) - MAX_LISTED
        extra = f" and {more} more{f' ({hint})' if hint else ''}" if more > 0 else ""
        parts.append(f"{'' if guesses else ';'} {kind}: {shown}{extra}")
    return "".join(parts)


def unknown_application(message: str, name: str, apps: Sequence[Application]) -> str:
    """:func:`unknown` for applications: near misses among names and IDs, each application suggested once by
    its name, and the applications' names listed (cut at :data:`MAX_LISTED`).

    Args:
        message: the refusal, e.g. ``no application with ID or name 'Demo Ap'``.
        name: the ID or name that matched nothing.
        apps: every application.
    Returns:
        e.g. ``no application with ID or name 'demo ap'; did you mean 'Demo App'? applications: Demo App, Other App``.
    """
    by_key: dict[str, str] = {}
    for app in apps:
        by_key.setdefault(app.name, app.name)
        by_key.setdefault(app.id, app.name)
    guesses = list(dict.fromkeys(by_key[m] for m in near_misses(name, list(by_key))))
    return unknown(message, name, [], [a.name for a in apps], "applications", hint="authz registry app list",
                   guesses=guesses)
