"""Hand-built requests for the emulator's own tests, signed with ``providers/signing.py``, so each test can
break exactly one thing (body, secret, clock, nonce, header)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from flask_otp_conversion.providers.signing import (
    EMPTY_SHA256,
    acs3_sign,
    acs_timestamp,
    canonical_query,
    percent_encode,
    tc3_sign,
    v1_sign,
)
from flask_otp_conversion.testing import EmulatorServer, ProviderEmulator

UTC8 = timezone(timedelta(hours=8))
CN_PHONE = "+8613711112222"
SG_PHONE = "+6581234567"


def hour(moment: datetime) -> str:
    """``yyyymmddhh`` in UTC+8, the form of Tencent's statistics window."""
    return moment.astimezone(UTC8).strftime("%Y%m%d%H")


class Wire:
    """Hand-built, hand-signed requests to a running emulator."""

    def __init__(self, url: str, emu: ProviderEmulator, client: httpx.Client) -> None:
        self.emu = emu
        self.client = client
        self.url = url.rstrip("/") + "/"
        self.host = url.split("//", 1)[1].rstrip("/")
        self.port = int(self.host.rsplit(":", 1)[1])

    @classmethod
    def of(cls, server: EmulatorServer, client: httpx.Client) -> Wire:
        return cls(server.url, server.emulator, client)

    # ---- Tencent (TC3-HMAC-SHA256) ----------------------------------------------------------------------

    def tencent(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        body: bytes | None = None,
        region: str = "ap-guangzhou",
        version: str = "2021-01-11",
        timestamp: int | None = None,
        secret_id: str | None = None,
        secret_key: str | None = None,
        sign_host: str | None = None,
        signed_body: bytes | None = None,
        authorization: str | None = None,
        sign_action: bool = False,
    ) -> httpx.Response:
        sent = body if body is not None else json.dumps(params or {}).encode()
        ts = timestamp if timestamp is not None else int(time.time())
        signature = tc3_sign(
            secret_id=secret_id or self.emu.TENCENT_SECRET_ID,
            secret_key=secret_key or self.emu.TENCENT_SECRET_KEY,
            host=sign_host or self.host,
            content_type="application/json",
            body=signed_body if signed_body is not None else sent,
            timestamp=ts,
            extra_headers={"X-TC-Action": action} if sign_action else None,
        )
        headers = {
            "Content-Type": "application/json",
            "X-TC-Action": action,
            "X-TC-Version": version,
            "X-TC-Timestamp": str(ts),
            "X-TC-Region": region,
            "Authorization": authorization if authorization is not None else signature.authorization,
        }
        return self.client.post(self.url, content=sent, headers=headers)

    def tencent_response(self, action: str, params: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
        response = self.tencent(action, params, **kwargs)
        assert response.status_code == 200, response.text
        payload: dict[str, Any] = response.json()["Response"]
        return payload

    def tencent_error(self, action: str, params: Mapping[str, Any], **kwargs: Any) -> str:
        """The ``Response.Error.Code`` of a call expected to fail (HTTP 200, as Tencent answers)."""
        payload = self.tencent_response(action, params, **kwargs)
        assert "Error" in payload, payload
        assert payload["RequestId"]
        code: str = payload["Error"]["Code"]
        return code

    def send_tencent(self, phone: str = CN_PHONE, code: str = "482913") -> str:
        payload = self.tencent_response("SendSms", self.sms_params([phone], [code]))
        (status,) = payload["SendStatusSet"]
        assert status["Code"] == "Ok", status
        serial: str = status["SerialNo"]
        return serial

    def sms_params(self, phones: list[str], template_params: list[str], **extra: Any) -> dict[str, Any]:
        return {
            "PhoneNumberSet": phones,
            "SmsSdkAppId": self.emu.TENCENT_SDK_APP_ID,
            "TemplateId": "1110",
            "SignName": "TestSign",
            "TemplateParamSet": template_params,
            **extra,
        }

    def report_params(self, serial: str, **extra: Any) -> dict[str, Any]:
        return {"SmsSdkAppId": self.emu.TENCENT_SDK_APP_ID, "SerialNo": serial, **extra}

    def statistics_params(self, begin: datetime, end: datetime, **extra: Any) -> dict[str, Any]:
        return {
            "BeginTime": hour(begin),
            "EndTime": hour(end),
            "SmsSdkAppId": self.emu.TENCENT_SDK_APP_ID,
            "Limit": 0,
            "Offset": 0,
            **extra,
        }

    # ---- Alibaba ACS3-HMAC-SHA256 -----------------------------------------------------------------------

    def acs3(
        self,
        action: str,
        version: str,
        params: Mapping[str, str],
        *,
        nonce: str | None = None,
        date: str | None = None,
        key_id: str | None = None,
        secret: str | None = None,
        body: bytes = b"",
        content_sha256: str | None = None,
        signed_params: Mapping[str, str] | None = None,
        query: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        unsigned_headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        headers = {
            "host": self.host,
            "x-acs-action": action,
            "x-acs-version": version,
            "x-acs-date": date or acs_timestamp(datetime.now(timezone.utc)),
            "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
            "x-acs-content-sha256": content_sha256 or EMPTY_SHA256,
            "accept": "application/json",
            **(extra_headers or {}),
        }
        signature = acs3_sign(
            access_key_id=key_id or self.emu.ALIBABA_ACCESS_KEY_ID,
            access_key_secret=secret or self.emu.ALIBABA_ACCESS_KEY_SECRET,
            method="POST",
            query=signed_params if signed_params is not None else params,
            headers=headers,
            body=body,
        )
        sent = {**headers, **(unsigned_headers or {}), "Authorization": signature.authorization}
        query_string = query if query is not None else canonical_query(params)
        return self.client.post(self.url + ("?" + query_string if query_string else ""), content=body, headers=sent)

    def send_alibaba(self, phone: str = SG_PHONE, code: str = "482913", *, site: str = "intl") -> str:
        """A send through the API family of ``site``: the id that site's conversion report takes."""
        template_param = json.dumps({"code": code})
        if site == "intl":
            response = self.acs3(
                "SendMessageWithTemplate",
                "2018-05-01",
                {
                    "To": phone.lstrip("+"),
                    "From": "Brand",
                    "TemplateCode": "SMS_1",
                    "TemplateParam": template_param,
                },
            )
            assert response.json()["ResponseCode"] == "OK", response.text
            message_id: str = response.json()["MessageId"]
            return message_id
        response = self.acs3(
            "SendSms",
            "2017-05-25",
            {
                "PhoneNumbers": phone.lstrip("+"),
                "SignName": "Brand",
                "TemplateCode": "SMS_1",
                "TemplateParam": template_param,
            },
        )
        assert response.json()["Code"] == "OK", response.text
        biz_id: str = response.json()["BizId"]
        return biz_id

    # ---- Alibaba v1 (HMAC-SHA1) -------------------------------------------------------------------------

    def v1(
        self,
        action: str,
        version: str,
        params: Mapping[str, str],
        *,
        fmt: str | None = "JSON",
        nonce: str | None = None,
        timestamp: str | None = None,
        key_id: str | None = None,
        secret: str | None = None,
    ) -> httpx.Response:
        signed = {
            **params,
            "Action": action,
            "Version": version,
            "Timestamp": timestamp or acs_timestamp(datetime.now(timezone.utc)),
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            "SignatureNonce": nonce or uuid.uuid4().hex,
            "AccessKeyId": key_id or self.emu.ALIBABA_ACCESS_KEY_ID,
        }
        if fmt is not None:
            signed["Format"] = fmt
        signature = v1_sign(
            access_key_secret=secret or self.emu.ALIBABA_ACCESS_KEY_SECRET, method="POST", params=signed
        )
        query = f"{signature.canonicalized_query_string}&Signature={percent_encode(signature.signature)}"
        return self.client.post(f"{self.url}?{query}")
