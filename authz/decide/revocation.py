"""Revocation phase: a token whose ID (``jti``, RFC 7519 section 4.1.7) was revoked is refused (401 900901).

Runs right after the identity phase, before any registry lookup. Revocations are stored per key manager in
Redis until the token's expiry (``authz registry revoke``, admin API ``CreateRevocation``) and read through
the cache of :class:`authz.registry.cache.RegistryCache`. A token without ``jti`` cannot be revoked individually.
"""

from __future__ import annotations

from authz.errors import Denial, Reason
from authz.model import Identity
from authz.registry.cache import RegistryCache


async def check_not_revoked(identity: Identity, registry: RegistryCache) -> None:
    """Deny a revoked token.

    Args:
        identity: the validated token (``key_manager``, ``token_id``).
        registry: the registry cache answering :meth:`RegistryCache.is_revoked`.
    Raises:
        Denial: ``INVALID_CREDENTIALS`` (401 900901, ``error="invalid_token"``) when the ``jti`` is revoked.
        DependencyUnavailable: Redis unreachable with no usable cached answer (503: never an allow).
    """
    if identity.token_id is None:
        return
    if await registry.is_revoked(identity.key_manager, identity.token_id):
        raise Denial(
            Reason.INVALID_CREDENTIALS,
            "The access token has been revoked",
            log_detail=f"jti {identity.token_id[:128]!r} of key manager {identity.key_manager} is revoked",
        )
