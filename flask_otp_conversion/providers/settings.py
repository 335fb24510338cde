"""Validated settings of the built-in providers (``OTP_CONVERSION_TENCENT_*``, ``OTP_CONVERSION_ALIBABA_*``).

Kept apart from the clients so the config can be validated without building one. Values set from the
environment by ``app.config.from_prefixed_env()`` arrive JSON-decoded, so numeric ids are coerced to strings.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

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
