"""Static verification keys (``key_managers[].certificates``): PEM files instead of a JWKS endpoint.

The key source WSO2 API Manager calls certificate type PEM. The files were read and checked when the config
was validated (``authz check-config`` reports an unreadable file); the keys never refresh: a rotation is a
config change (and a reload).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from authz.config import CertificateFile
from authz.errors import Denial, DependencyUnavailable, Reason
from authz.keys.jwk import KeySet, VerificationKey, select_key
from authz.model import Step

log = logging.getLogger("authz.static_keys")


class StaticKeys:
    """The key set of a key manager configured with ``certificates`` (an :class:`authz.keys.jwk.KeySource`).

    Args:
        name: the key manager's name.
        certificates: the ``certificates`` entries, their keys loaded by config validation.
        clock: monotonic clock in seconds.
    """

    def __init__(
        self, name: str, certificates: Sequence[CertificateFile], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        keys = tuple(VerificationKey(kid=c.kid, alg=None, key=c.public_key) for c in certificates)
        self._keyset: KeySet | None = KeySet(keys=keys, fetched_at=clock()) if keys else None
        self.last_error: str | None = None if keys else "no static key configured"

    @property
    def keyset(self) -> KeySet | None:
        """The key set, or None when no key is configured."""
        return self._keyset

    def usable(self) -> bool:
        """Whether there is a key set (static keys never go stale)."""
        return self._keyset is not None

    def contains(self, key: VerificationKey) -> bool:
        """Whether ``key`` is one of the static keys."""
        return self._keyset is not None and key in self._keyset.keys

    async def signing_key(self, kid: str | None, alg: str, trace: list[Step] | None = None) -> VerificationKey:
        """The static key for these header values (:func:`authz.keys.jwk.select_key`); nothing is ever fetched.

        Args:
            kid: the JWS header ``kid``, or None.
            alg: the JWS header ``alg``.
            trace: when given, a ``key`` step is added.

        Raises:
            Denial: ``INVALID_CREDENTIALS`` when no key (or more than one, without ``kid``) fits.
            DependencyUnavailable: no key configured.
        """
        if self._keyset is None:
            raise DependencyUnavailable(f"jwks:{self.name}", self.last_error or "no key")
        key = select_key(self._keyset, kid, alg)
        if trace is not None:
            trace.append(Step("key", f"kid={kid!r} alg={alg}: " + ("found" if key is not None else "no key fits")
                              + " among the static certificates", f"one of {self.name}'s certificates fits kid and alg",
                              key is not None))
        if key is None:
            raise Denial(
                Reason.INVALID_CREDENTIALS, "The access token was not signed by a key of its issuer",
                log_detail=f"key manager {self.name}: no static key for kid={(kid or '')[:64]!r} alg={alg}",
            )
        return key

    async def start(self) -> None:
        """Nothing to fetch: the keys were loaded with the config."""

    async def close(self) -> None:
        """Nothing runs in the background."""


