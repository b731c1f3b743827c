"""The rule a new subscription must meet beyond the store's own: its application can use it.

Used by :class:`authz.registry.admin.RegistryAdmin` (subscribe) and :mod:`authz.registry.yaml_io` (import, checked
before the first write). Pure: configuration and names in, a message out.
"""

from __future__ import annotations

from authz.config import Settings


def unusable_subscription(settings: Settings, app_name: str, api_id: str, key_managers: set[str]) -> str | None:
    """Why a subscription of an application to an API could never be used, or None.

    The rule: an application that has client IDs, none of them of a key manager the API accepts
    (``apis[].key_managers``), can never call the API (every token it gets is refused with 401), so subscribing
    it is refused. An application without any client ID may subscribe: its keys come later (a developer portal
    lets one subscribe before generating keys), and the first client ID it gets decides.

    Args:
        settings: the configuration (the API must be configured).
        app_name: the application's name, for the message.
        api_id: the API.
        key_managers: the key managers of the application's client IDs.
    Returns:
        The refusal message, naming the key managers on both sides; None when the subscription can be used.
    """
    api = settings.api(api_id)
    if api is None or api.key_managers is None or not key_managers or key_managers & set(api.key_managers):
        return None
    accepted = ", ".join(api.key_managers)
    return (f"application {app_name} has client IDs of key managers {', '.join(sorted(key_managers))} only, and API "
            f"{api_id} accepts tokens of {accepted}: attach a client ID of {accepted} first "
            f"(app add-client --key-manager NAME)")
