"""authz: an Envoy external authorization service for OAuth2 JWT access tokens, applications and subscriptions."""

__version__ = "0.1.0"
