"""Validated settings of the built-in providers (``OTP_CONVERSION_TENCENT_*``, ``OTP_CONVERSION_ALIBABA_*``).

Kept apart from the clients so the config can be validated without building one. Values set from the
environment by ``app.config.from_prefixed_env()`` arrive JSON-decoded, so numeric ids are coerced to strings.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_core.core_schema import ValidationInfo

_URL = re.compile(r"^https?://[^\s/]+(:\d+)?/?$")


def _endpoint(example: str) -> AfterValidator:
    """An endpoint check whose error says what is expected, not the regular expression it is checked with."""

    def check(value: str) -> str:
        if not _URL.match(value):
            raise PydanticCustomError(
                "endpoint", f"must be an http(s) URL with a host and no path, like {example}"
            )
        return value

    return AfterValidator(check)


TencentEndpoint = Annotated[str, _endpoint("https://sms.tencentcloudapi.com")]
DysmsEndpoint = Annotated[str, _endpoint("https://dysmsapi.ap-southeast-1.aliyuncs.com")]
CamsEndpoint = Annotated[str, _endpoint("https://cams.ap-southeast-1.aliyuncs.com")]


class _ProviderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, frozen=True)


class TencentSettings(_ProviderSettings):
    secret_id: SecretStr = Field(min_length=1)
    secret_key: SecretStr = Field(min_length=1)
    sdk_app_id: str = Field(pattern=r"^\d{4,20}$")
    endpoint: TencentEndpoint = "https://sms.tencentcloudapi.com"
    send_region: str = Field(default="ap-guangzhou", pattern=r"^[a-z]{2}-[a-z0-9-]+$")
    sign_name: str | None = None
    template_id: str | None = Field(default=None, pattern=r"^\d+$")


ALIBABA_ENDPOINTS = {
    "intl": "https://dysmsapi.ap-southeast-1.aliyuncs.com",
    "china": "https://dysmsapi.aliyuncs.com",
}


class AlibabaSettings(_ProviderSettings):
    access_key_id: SecretStr = Field(min_length=1)
    access_key_secret: SecretStr = Field(min_length=1)
    site: Literal["intl", "china"] = "intl"
    endpoint: DysmsEndpoint | None = None
    sign_name: str | None = None
    template_code: str | None = None
    cams_endpoint: CamsEndpoint = "https://cams.ap-southeast-1.aliyuncs.com"
    cust_space_id: str | None = None
    #: ``acs3`` (ACS3-HMAC-SHA256, the SDKs' default) or ``v1`` (legacy HMAC-SHA1 RPC signature).
    signature: Literal["acs3", "v1"] = "acs3"

    @field_validator("site", "signature", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _default_endpoint(self) -> AlibabaSettings:
        if self.endpoint is None:
            object.__setattr__(self, "endpoint", ALIBABA_ENDPOINTS[self.site])
        return self

    @property
    def dysms_endpoint(self) -> str:
        return self.endpoint or ALIBABA_ENDPOINTS[self.site]


def _message_text(value: str) -> str:
    if "{code}" not in value:
        raise PydanticCustomError("message_text", "must contain {code}, where the OTP code goes")
    return value


MessageText = Annotated[str, AfterValidator(_message_text)]
TwilioEndpoint = Annotated[str, _endpoint("https://api.twilio.com")]
AwsEndpoint = Annotated[str, _endpoint("https://sms-voice.us-east-1.amazonaws.com")]


class TwilioSettings(_ProviderSettings):
    """``OTP_CONVERSION_TWILIO_*``. HTTP Basic with the account SID and auth token, or with an API key SID and
    secret (then the account SID still names the account in every path)."""

    #: Also the account the conversions are reported to: an identifier, not a secret.
    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: SecretStr | None = None
    api_key_sid: str | None = Field(default=None, pattern=r"^SK[0-9a-fA-F]{32}$")
    api_key_secret: SecretStr | None = Field(default=None, validate_default=True)
    #: ``https://api.twilio.com`` unless ``region``/``edge`` pick another host (``api.<edge>.<region>.twilio.com``,
    #: the SDK's rule) or this is set (which wins).
    endpoint: TwilioEndpoint | None = None
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}[0-9]$")
    edge: str | None = Field(default=None, pattern=r"^[a-z]+$")
    #: The ``From``: an E.164 number or an alphanumeric sender id; or ``messaging_service_sid``.
    sender: str | None = Field(default=None, pattern=r"^(?:\+[1-9]\d{6,14}|[A-Za-z0-9 ]{1,11})$")
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")
    text_template: MessageText = "Your verification code is {code}"
    #: Seconds Twilio may queue the message before giving up (``ValidityPeriod``); None: Twilio's default.
    validity_period: int | None = Field(default=None, ge=1, le=36000)
    #: Requests/s. Twilio publishes no REST rate (excess concurrency gets 429 ``20429``): both unconfirmed.
    message_rate_limit: float = Field(default=100.0, gt=0)
    feedback_rate_limit: float = Field(default=100.0, gt=0)

    # Checked on fields, not on the model: a model error would name no key and echo every value, secrets too.
    @field_validator("api_key_secret")
    @classmethod
    def _one_credential(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if (value is None) != (info.data.get("api_key_sid") is None):
            raise ValueError("OTP_CONVERSION_TWILIO_API_KEY_SID and _API_KEY_SECRET go together")
        if value is None and info.data.get("auth_token") is None:
            raise ValueError("set OTP_CONVERSION_TWILIO_AUTH_TOKEN, or an API key (_API_KEY_SID, _API_KEY_SECRET)")
        return value

    @field_validator("messaging_service_sid")
    @classmethod
    def _one_sender(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("sender") is not None:
            raise ValueError("set OTP_CONVERSION_TWILIO_SENDER or this, not both")
        return value

    @property
    def base_url(self) -> str:
        if self.endpoint is not None:
            return self.endpoint.rstrip("/")
        if self.edge is not None:
            return f"https://api.{self.edge}.{self.region or 'us1'}.twilio.com"
        if self.region is not None:
            return f"https://api.{self.region}.twilio.com"
        return "https://api.twilio.com"


class AwsSettings(_ProviderSettings):
    """``OTP_CONVERSION_AWS_*``: AWS End User Messaging SMS (``pinpoint-sms-voice-v2``), SigV4-signed."""

    region: str = Field(pattern=r"^[a-z]{2}(?:-[a-z]+)+-\d$")
    access_key_id: SecretStr = Field(min_length=16, max_length=128)
    secret_access_key: SecretStr = Field(min_length=1)
    #: With temporary credentials (``ASIA...`` keys).
    session_token: SecretStr | None = None
    #: The 12-digit AWS account, said in the account rows are reported to (recommended when several AWS
    #: accounts send in one region); never sent.
    account_id: str | None = Field(default=None, pattern=r"^\d{12}$")
    #: ``https://sms-voice.<region>.amazonaws.com`` by default.
    endpoint: AwsEndpoint | None = None
    #: Phone number, sender id, pool (id or ARN); None: AWS picks one of the account's.
    origination_identity: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_:/+-]{1,256}$")
    configuration_set_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_:/-]{1,256}$")
    message_type: Literal["TRANSACTIONAL", "PROMOTIONAL"] = "TRANSACTIONAL"
    text_template: MessageText = "Your verification code is {code}"
    #: Seconds AWS may try to deliver (``TimeToLive``, 5-259200); None: AWS's default of 72 hours.
    time_to_live: int | None = Field(default=None, ge=5, le=259200)
    #: How long after the send feedback is still sent (seconds): AWS fails the message by itself at one hour,
    #: so a report later than this is dropped as expired. The margin covers clock skew and the request.
    report_deadline: float = Field(default=55 * 60.0, gt=0, le=3600)
    #: Requests/s. AWS states no request rate for either action (account API quotas apply): unconfirmed.
    send_rate_limit: float = Field(default=20.0, gt=0)
    feedback_rate_limit: float = Field(default=20.0, gt=0)

    @field_validator("message_type", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def base_url(self) -> str:
        return (self.endpoint or f"https://sms-voice.{self.region}.amazonaws.com").rstrip("/")


def _has_code_placeholder(value: str) -> str:
    if "{code}" not in value:
        raise PydanticCustomError("text_template", "must contain {code}, where the OTP code goes")
    return value


TextTemplate = Annotated[str, AfterValidator(_has_code_placeholder)]
VonageEndpoint = Annotated[str, _endpoint("https://api.nexmo.com")]
PlivoEndpoint = Annotated[str, _endpoint("https://api.plivo.com")]


class VonageSettings(_ProviderSettings):
    """``OTP_CONVERSION_VONAGE_*``. ``auth`` picks how requests authenticate: ``basic`` (HTTP Basic
    api_key:api_secret, the SDK's default), ``body`` (``api_key``/``api_secret`` as form parameters) or
    ``signature`` (``api_key`` + ``sig`` with the dashboard's signature secret and method); by default
    ``signature`` when a signature secret is set, else ``basic``."""

    #: Also the account the conversions are reported to (an identifier Vonage shows in the dashboard).
    api_key: str = Field(pattern=r"^[A-Za-z0-9]{4,32}$")
    api_secret: SecretStr | None = None
    signature_secret: SecretStr | None = None
    #: The dashboard's "signature method"; ``md5hash`` (MD5 of string + secret) is its default.
    signature_method: Literal["md5hash", "md5", "sha1", "sha256", "sha512"] = "md5hash"
    auth: Literal["basic", "body", "signature"] | None = Field(default=None, validate_default=True)
    sms_endpoint: VonageEndpoint = "https://rest.nexmo.com"
    conversion_endpoint: VonageEndpoint = "https://api.nexmo.com"
    #: The SMS ``from``: an alphanumeric sender id (<= 11 characters) or a number without ``+``.
    sender: str | None = Field(default=None, pattern=r"^(?:[A-Za-z0-9 ]{1,11}|\d{7,15})$")
    text_template: TextTemplate = "Your verification code is {code}"
    #: Send the verification time as the conversion's ``timestamp`` (else Vonage takes the time it receives
    #: the report). Signed requests then sign with it as the SDK does; whether Vonage accepts that as the
    #: signature timestamp is unconfirmed, so False signs with a UNIX ``timestamp`` instead.
    conversion_timestamp: bool = True
    #: Requests/s: the SMS API's documented 30/s per key; the Conversion API publishes none (unconfirmed).
    sms_rate_limit: float = Field(default=30.0, gt=0)
    conversion_rate_limit: float = Field(default=30.0, gt=0)
    #: Seconds after the send a report is still worth sending (None: no limit). Vonage documents none.
    report_deadline: float | None = Field(default=None, gt=0)

    @field_validator("signature_method", "auth", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("auth")
    @classmethod
    def _credentials_for_auth(cls, value: str | None, info: ValidationInfo) -> str:
        """Checked here, not on the model, so the error names ``OTP_CONVERSION_VONAGE_AUTH``."""
        has_signature = info.data.get("signature_secret") is not None
        if value is None:
            value = "signature" if has_signature else "basic"
        if value == "signature" and not has_signature:
            raise ValueError("auth 'signature' needs OTP_CONVERSION_VONAGE_SIGNATURE_SECRET")
        if value in ("basic", "body") and info.data.get("api_secret") is None:
            raise ValueError(f"auth {value!r} needs OTP_CONVERSION_VONAGE_API_SECRET")
        return value


class PlivoSettings(_ProviderSettings):
    """``OTP_CONVERSION_PLIVO_*``. HTTP Basic auth_id:auth_token; the auth id is also the account in every
    path."""

    auth_id: str = Field(pattern=r"^[MS]A[A-Z0-9]{18}$")
    auth_token: SecretStr = Field(min_length=1)
    endpoint: PlivoEndpoint = "https://api.plivo.com"
    #: The message ``src`` (a number with its country code, or a sender id); or ``powerpack_uuid``.
    sender: str | None = Field(default=None, pattern=r"^\+?[A-Za-z0-9]{3,15}$")
    powerpack_uuid: str | None = None
    text_template: TextTemplate = "Your verification code is {code}"
    #: The conversion URL's path. Plivo documents it in lower case, unlike the rest of its API (the SDK's
    #: generic builder would write ``/v1/Account/{auth_id}/Message/{message_uuid}/Conversion/``); whether
    #: its router minds the case is unconfirmed, hence configurable.
    conversion_path: str = Field(
        default="/v1/account/{auth_id}/message/{message_uuid}/conversion/",
        pattern=r"^/\S*\{auth_id\}\S*\{message_uuid\}\S*/$",
    )
    #: Requests/s: Plivo allows 300 API requests per 5 s per account (shared by every API).
    message_rate_limit: float = Field(default=60.0, gt=0)
    conversion_rate_limit: float = Field(default=60.0, gt=0)
    #: Seconds after the send a report is still worth sending (None: no limit). Plivo documents none.
    report_deadline: float | None = Field(default=None, gt=0)

    @field_validator("powerpack_uuid")
    @classmethod
    def _one_source(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("sender") is not None:
            raise ValueError("set OTP_CONVERSION_PLIVO_SENDER or this, not both")
        return value
