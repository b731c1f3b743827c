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

class DescribeApplicationRequest(_message.Message):
    __slots__ = ("application", "client_id", "key_manager")
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_MANAGER_FIELD_NUMBER: _ClassVar[int]
    application: str
    client_id: str
    key_manager: str
    def __init__(self, application: _Optional[str] = ..., client_id: _Optional[str] = ..., key_manager: _Optional[str] = ...) -> None: ...

class ApplicationDescription(_message.Message):
    __slots__ = ("application", "clients", "subscriptions", "gateway_call")
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_CALL_FIELD_NUMBER: _ClassVar[int]
    application: Application
    clients: _containers.RepeatedCompositeFieldContainer[ClientDescription]
    subscriptions: _containers.RepeatedCompositeFieldContainer[Api]
    gateway_call: GatewayCall
    def __init__(self, application: _Optional[_Union[Application, _Mapping]] = ..., clients: _Optional[_Iterable[_Union[ClientDescription, _Mapping]]] = ..., subscriptions: _Optional[_Iterable[_Union[Api, _Mapping]]] = ..., gateway_call: _Optional[_Union[GatewayCall, _Mapping]] = ...) -> None: ...

class ClientDescription(_message.Message):
    __slots__ = ("client", "connection", "scopes", "token_requests", "notes")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    client: Client
    connection: KeyManagerConnection
    scopes: _containers.RepeatedScalarFieldContainer[str]
    token_requests: _containers.RepeatedCompositeFieldContainer[TokenRequest]
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, client: _Optional[_Union[Client, _Mapping]] = ..., connection: _Optional[_Union[KeyManagerConnection, _Mapping]] = ..., scopes: _Optional[_Iterable[str]] = ..., token_requests: _Optional[_Iterable[_Union[TokenRequest, _Mapping]]] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class KeyManagerConnection(_message.Message):
    __slots__ = ("key_manager", "issuer", "token_endpoint", "jwks_uri", "grant_types_supported", "scopes_supported", "token_endpoint_auth_methods_supported", "metadata_url", "source", "problems")
    KEY_MANAGER_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    JWKS_URI_FIELD_NUMBER: _ClassVar[int]
    GRANT_TYPES_SUPPORTED_FIELD_NUMBER: _ClassVar[int]
    SCOPES_SUPPORTED_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED_FIELD_NUMBER: _ClassVar[int]
    METADATA_URL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    key_manager: str
    issuer: str
    token_endpoint: str
    jwks_uri: str
    grant_types_supported: _containers.RepeatedScalarFieldContainer[str]
    scopes_supported: _containers.RepeatedScalarFieldContainer[str]
    token_endpoint_auth_methods_supported: _containers.RepeatedScalarFieldContainer[str]
    metadata_url: str
    source: str
    problems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key_manager: _Optional[str] = ..., issuer: _Optional[str] = ..., token_endpoint: _Optional[str] = ..., jwks_uri: _Optional[str] = ..., grant_types_supported: _Optional[_Iterable[str]] = ..., scopes_supported: _Optional[_Iterable[str]] = ..., token_endpoint_auth_methods_supported: _Optional[_Iterable[str]] = ..., metadata_url: _Optional[str] = ..., source: _Optional[str] = ..., problems: _Optional[_Iterable[str]] = ...) -> None: ...

class Parameter(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class TokenRequest(_message.Message):
    __slots__ = ("grant_type", "token_endpoint", "client_authentication", "parameters", "curl", "notes")
    GRANT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_AUTHENTICATION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    CURL_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    grant_type: str
    token_endpoint: str
    client_authentication: str
    parameters: _containers.RepeatedCompositeFieldContainer[Parameter]
    curl: str
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, grant_type: _Optional[str] = ..., token_endpoint: _Optional[str] = ..., client_authentication: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[Parameter, _Mapping]]] = ..., curl: _Optional[str] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class GatewayCall(_message.Message):
    __slots__ = ("api_id", "method", "url", "headers", "curl")
    API_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    CURL_FIELD_NUMBER: _ClassVar[int]
    api_id: str
    method: str
    url: str
    headers: _containers.RepeatedCompositeFieldContainer[Parameter]
    curl: str
    def __init__(self, api_id: _Optional[str] = ..., method: _Optional[str] = ..., url: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[Parameter, _Mapping]]] = ..., curl: _Optional[str] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("path", "methods", "scopes", "scope_match", "public")
    PATH_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    SCOPE_MATCH_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    path: str
    methods: _containers.RepeatedScalarFieldContainer[str]
    scopes: _containers.RepeatedScalarFieldContainer[str]
    scope_match: str
    public: bool
    def __init__(self, path: _Optional[str] = ..., methods: _Optional[_Iterable[str]] = ..., scopes: _Optional[_Iterable[str]] = ..., scope_match: _Optional[str] = ..., public: _Optional[bool] = ...) -> None: ...

class Api(_message.Message):
    __slots__ = ("id", "name", "context", "version", "hosts", "resources", "public", "key_managers", "scopes", "subscription")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    KEY_MANAGERS_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    context: str
    version: str
    hosts: _containers.RepeatedScalarFieldContainer[str]
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    public: bool
    key_managers: _containers.RepeatedScalarFieldContainer[str]
    scopes: _containers.RepeatedScalarFieldContainer[str]
    subscription: Subscription
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., context: _Optional[str] = ..., version: _Optional[str] = ..., hosts: _Optional[_Iterable[str]] = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ..., public: _Optional[bool] = ..., key_managers: _Optional[_Iterable[str]] = ..., scopes: _Optional[_Iterable[str]] = ..., subscription: _Optional[_Union[Subscription, _Mapping]] = ...) -> None: ...

class ListApisRequest(_message.Message):
    __slots__ = ("application",)
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    application: str
    def __init__(self, application: _Optional[str] = ...) -> None: ...

class ListApisResponse(_message.Message):
    __slots__ = ("apis",)
    APIS_FIELD_NUMBER: _ClassVar[int]
    apis: _containers.RepeatedCompositeFieldContainer[Api]
    def __init__(self, apis: _Optional[_Iterable[_Union[Api, _Mapping]]] = ...) -> None: ...

class GetApiRequest(_message.Message):
    __slots__ = ("api_id", "application")
    API_ID_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    api_id: str
    application: str
    def __init__(self, api_id: _Optional[str] = ..., application: _Optional[str] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("token", "method", "path", "host", "api_id", "environment", "headers")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    API_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    token: str
    method: str
    path: str
    host: str
    api_id: str
    environment: str
    headers: _containers.ScalarMap[str, str]
    def __init__(self, token: _Optional[str] = ..., method: _Optional[str] = ..., path: _Optional[str] = ..., host: _Optional[str] = ..., api_id: _Optional[str] = ..., environment: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ExplainStep(_message.Message):
    __slots__ = ("name", "seen", "rule", "verdict")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEEN_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    name: str
    seen: str
    rule: str
    verdict: str
    def __init__(self, name: _Optional[str] = ..., seen: _Optional[str] = ..., rule: _Optional[str] = ..., verdict: _Optional[str] = ...) -> None: ...

class ExplainPhase(_message.Message):
    __slots__ = ("name", "outcome", "steps")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    outcome: str
    steps: _containers.RepeatedCompositeFieldContainer[ExplainStep]
    def __init__(self, name: _Optional[str] = ..., outcome: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[ExplainStep, _Mapping]]] = ...) -> None: ...

class ExplainHeader(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("result", "phase", "code", "http_status", "message", "description", "detail", "headers", "headers_to_remove", "metadata", "phases")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RESULT_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_TO_REMOVE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    result: str
    phase: str
    code: str
    http_status: int
    message: str
    description: str
    detail: str
    headers: _containers.RepeatedCompositeFieldContainer[ExplainHeader]
    headers_to_remove: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    phases: _containers.RepeatedCompositeFieldContainer[ExplainPhase]
    def __init__(self, result: _Optional[str] = ..., phase: _Optional[str] = ..., code: _Optional[str] = ..., http_status: _Optional[int] = ..., message: _Optional[str] = ..., description: _Optional[str] = ..., detail: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[ExplainHeader, _Mapping]]] = ..., headers_to_remove: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., phases: _Optional[_Iterable[_Union[ExplainPhase, _Mapping]]] = ...) -> None: ...
