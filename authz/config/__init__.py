"""YAML configuration: validated, immutable settings (pydantic v2), one module per group of sections.

``load_config(path)`` reads and validates a file; every problem is reported as ``<yaml path>: <reason>``
(:class:`ConfigError`). Each field's description is its docstring, from which ``docs/configuration.md`` is
generated (:mod:`authz.config.reference`).
"""

from authz.config.apis import ApiBackendJwtSettings, ApiSettings, ResourceSettings
from authz.config.base import (
    ASYMMETRIC_ALGORITHMS,
    ENV_ADMIN_TOKEN,
    ENV_CONFIG,
    ENV_HTTP_LISTEN,
    ENV_LISTEN,
    ENV_OVERRIDES,
    ENV_REDIS_URL,
    HTTP_METHODS,
    media_type,
    normalize_issuer,
)
from authz.config.key_managers import CertificateFile, JwksSettings, KeyManagerSettings
from authz.config.load import ConfigError, load_config, load_servable, parse_config
from authz.config.sections import (
    BACKEND_JWT_RESERVED_CLAIMS,
    AdminSettings,
    BackendJwtKeySettings,
    BackendJwtSettings,
    HeadersSettings,
    LoggingSettings,
    RedisSettings,
    ServerSettings,
    TokenSettings,
)
from authz.config.settings import Settings, serving_errors

__all__ = [
    "ASYMMETRIC_ALGORITHMS", "BACKEND_JWT_RESERVED_CLAIMS", "ENV_ADMIN_TOKEN", "ENV_CONFIG", "ENV_HTTP_LISTEN",
    "ENV_LISTEN", "ENV_OVERRIDES", "ENV_REDIS_URL",
    "HTTP_METHODS", "AdminSettings", "ApiBackendJwtSettings", "ApiSettings", "BackendJwtKeySettings",
    "BackendJwtSettings", "CertificateFile", "ConfigError", "HeadersSettings", "JwksSettings", "KeyManagerSettings",
    "LoggingSettings", "RedisSettings", "ResourceSettings", "ServerSettings", "Settings", "TokenSettings", "load_config",
    "load_servable",
    "media_type", "normalize_issuer", "parse_config", "serving_errors",
]
