from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Application(_message.Message):
    __slots__ = ("id", "name", "owner", "tier", "status", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    owner: str
    tier: str
    status: str
    created_at: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., owner: _Optional[str] = ..., tier: _Optional[str] = ..., status: _Optional[str] = ..., created_at: _Optional[float] = ...) -> None: ...

class Client(_message.Message):
    __slots__ = ("application_id", "key_manager", "client_id", "key_type")
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_MANAGER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    application_id: str
    key_manager: str
    client_id: str
    key_type: str
    def __init__(self, application_id: _Optional[str] = ..., key_manager: _Optional[str] = ..., client_id: _Optional[str] = ..., key_type: _Optional[str] = ...) -> None: ...

class Subscription(_message.Message):
    __slots__ = ("application_id", "api_id", "status", "tier", "created_at")
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    API_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    application_id: str
    api_id: str
    status: str
    tier: str
    created_at: float
    def __init__(self, application_id: _Optional[str] = ..., api_id: _Optional[str] = ..., status: _Optional[str] = ..., tier: _Optional[str] = ..., created_at: _Optional[float] = ...) -> None: ...

class Revocation(_message.Message):
    __slots__ = ("key_manager", "jti", "expires_at")
    KEY_MANAGER_FIELD_NUMBER: _ClassVar[int]
    JTI_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    key_manager: str
    jti: str
    expires_at: int
    def __init__(self, key_manager: _Optional[str] = ..., jti: _Optional[str] = ..., expires_at: _Optional[int] = ...) -> None: ...

class CreateApplicationRequest(_message.Message):
    __slots__ = ("name", "owner", "tier", "id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    owner: str
    tier: str
    id: str
    def __init__(self, name: _Optional[str] = ..., owner: _Optional[str] = ..., tier: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class GetApplicationRequest(_message.Message):
    __slots__ = ("application",)
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    application: str
    def __init__(self, application: _Optional[str] = ...) -> None: ...

class ListApplicationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListApplicationsResponse(_message.Message):
    __slots__ = ("applications",)
    APPLICATIONS_FIELD_NUMBER: _ClassVar[int]
    applications: _containers.RepeatedCompositeFieldContainer[Application]
    def __init__(self, applications: _Optional[_Iterable[_Union[Application, _Mapping]]] = ...) -> None: ...

class UpdateApplicationRequest(_message.Message):
    __slots__ = ("application", "name", "owner", "tier", "status")
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    application: str
    name: str
    owner: str
    tier: str
    status: str
    def __init__(self, application: _Optional[str] = ..., name: _Optional[str] = ..., owner: _Optional[str] = ..., tier: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class DeleteApplicationRequest(_message.Message):
    __slots__ = ("application",)
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    application: str
    def __init__(self, application: _Optional[str] = ...) -> None: ...

class DeleteApplicationResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: Application
    def __init__(self, deleted: _Optional[_Union[Application, _Mapping]] = ...) -> None: ...

class CreateClientRequest(_message.Message):
    __slots__ = ("application", "client_id", "key_manager", "key_type")
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_MANAGER_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    application: str
    client_id: str
    key_manager: str
    key_type: str
    def __init__(self, application: _Optional[str] = ..., client_id: _Optional[str] = ..., key_manager: _Optional[str] = ..., key_type: _Optional[str] = ...) -> None: ...

class GetClientRequest(_message.Message):
    __slots__ = ("client_id", "key_manager")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_MANAGER_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    key_manager: str
    def __init__(self, client_id: _Optional[str] = ..., key_manager: _Optional[str] = ...) -> None: ...

class ListClientsRequest(_message.Message):
    __slots__ = ("application",)
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    application: str
    def __init__(self, application: _Optional[str] = ...) -> None: ...

class ListClientsResponse(_message.Message):
    __slots__ = ("clients",)
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    clients: _containers.RepeatedCompositeFieldContainer[Client]
    def __init__(self, clients: _Optional[_Iterable[_Union[Client, _Mapping]]] = ...) -> None: ...

class UpdateClientRequest(_message.Message):
    __slots__ = ("application", "client_id", "key_manager", "key_type")
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_MANAGER_FIELD_NUMBER: _ClassVar[int]
    KEY_TYPE_FIELD_NUMBER: _ClassVar[int]
    application: str
    client_id: str
    key_manager: str
    key_type: str
    def __init__(self, application: _Optional[str] = ..., client_id: _Optional[str] = ..., key_manager: _Optional[str] = ..., key_type: _Optional[str] = ...) -> None: ...

class DeleteClientRequest(_message.Message):
    __slots__ = ("application", "client_id", "key_manager")
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_MANAGER_FIELD_NUMBER: _ClassVar[int]
    application: str
    client_id: str
    key_manager: str
    def __init__(self, application: _Optional[str] = ..., client_id: _Optional[str] = ..., key_manager: _Optional[str] = ...) -> None: ...

class DeleteClientResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateSubscriptionRequest(_message.Message):
    __slots__ = ("application", "api_id", "tier", "status")
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    API_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    application: str
    api_id: str
    tier: str
    status: str
    def __init__(self, application: _Optional[str] = ..., api_id: _Optional[str] = ..., tier: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class GetSubscriptionRequest(_message.Message):
    __slots__ = ("application", "api_id")
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    API_ID_FIELD_NUMBER: _ClassVar[int]
    application: str
    api_id: str
    def __init__(self, application: _Optional[str] = ..., api_id: _Optional[str] = ...) -> None: ...

class ListSubscriptionsRequest(_message.Message):
    __slots__ = ("application",)
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    application: str
    def __init__(self, application: _Optional[str] = ...) -> None: ...

class ListSubscriptionsResponse(_message.Message):
    __slots__ = ("subscriptions",)
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[Subscription]
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[Subscription, _Mapping]]] = ...) -> None: ...

class UpdateSubscriptionRequest(_message.Message):
    __slots__ = ("application", "api_id", "status", "tier")
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    API_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    application: str
    api_id: str
    status: str
    tier: str
    def __init__(self, application: _Optional[str] = ..., api_id: _Optional[str] = ..., status: _Optional[str] = ..., tier: _Optional[str] = ...) -> None: ...

class DeleteSubscriptionRequest(_message.Message):
    __slots__ = ("application", "api_id")
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    API_ID_FIELD_NUMBER: _ClassVar[int]
    application: str
    api_id: str
    def __init__(self, application: _Optional[str] = ..., api_id: _Optional[str] = ...) -> None: ...

class DeleteSubscriptionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateRevocationRequest(_message.Message):
    __slots__ = ("jti", "expires_at", "key_manager")
    JTI_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    KEY_MANAGER_FIELD_NUMBER: _ClassVar[int]
    jti: str
    expires_at: int
    key_manager: str
    def __init__(self, jti: _Optional[str] = ..., expires_at: _Optional[int] = ..., key_manager: _Optional[str] = ...) -> None: ...

class GetRevocationRequest(_message.Message):
    __slots__ = ("jti", "key_manager")
    JTI_FIELD_NUMBER: _ClassVar[int]
    KEY_MANAGER_FIELD_NUMBER: _ClassVar[int]
    jti: str
    key_manager: str
    def __init__(self, jti: _Optional[str] = ..., key_manager: _Optional[str] = ...) -> None: ...

class ListRevocationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRevocationsResponse(_message.Message):
    __slots__ = ("revocations",)
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    revocations: _containers.RepeatedCompositeFieldContainer[Revocation]
    def __init__(self, revocations: _Optional[_Iterable[_Union[Revocation, _Mapping]]] = ...) -> None: ...

class DeleteRevocationRequest(_message.Message):
    __slots__ = ("jti", "key_manager")
    JTI_FIELD_NUMBER: _ClassVar[int]
    KEY_MANAGER_FIELD_NUMBER: _ClassVar[int]
    jti: str
    key_manager: str
    def __init__(self, jti: _Optional[str] = ..., key_manager: _Optional[str] = ...) -> None: ...

class DeleteRevocationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
