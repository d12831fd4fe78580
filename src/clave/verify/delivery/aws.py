"""AWS SNS (sms) and SES (email) providers, through boto3 on worker threads."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from clave.verify.delivery.base import DeliveryError, OutgoingMessage
from clave.verify.models import Channel

# Error codes that mean "try again later"; anything else from AWS is the request's fault.
_TRANSIENT = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "KMSThrottlingException",
}


@dataclass(frozen=True, slots=True)
class AwsConfig:
    """Region, and an endpoint override (moto_server in tests, a VPC endpoint in production)."""

    region: str
    endpoint_url: str | None = None
    timeout: float = 10.0


def _client(tenant: str, config: AwsConfig) -> Any:
    # boto3 costs ~20 MiB per worker: imported only when an AWS provider is configured.
    import boto3
    from botocore.config import Config

    return boto3.client(
        tenant,
        region_name=config.region,
        endpoint_url=config.endpoint_url,
        config=Config(
            connect_timeout=config.timeout,
            read_timeout=config.timeout,
            retries={"max_attempts": 1, "mode": "standard"},  # the outbox retries, not boto
        ),
    )


def _errors() -> tuple[type[Exception], ...]:
    """botocore's exception classes, loaded with boto3 only when a provider is built."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def _failure(exc: Exception, what: str) -> DeliveryError:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        return DeliveryError(f"{what} {code}: {exc}", permanent=code not in _TRANSIENT)
    return DeliveryError(f"{what} unreachable: {exc}", permanent=False)


class SnsSmsProvider:
    """SMS through `sns.publish(PhoneNumber=...)`, as transactional messages."""

    name = "sns"
    channels = frozenset({Channel.SMS})

    def __init__(self, config: AwsConfig, *, sender_id: str | None = None) -> None:
        self._client = _client("sns", config)
        self._errors = _errors()
        self._sender_id = sender_id

    async def send(self, outgoing: OutgoingMessage) -> str | None:
        """Publish; the SNS MessageId is the provider message id."""
        attributes = {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}}
        if self._sender_id:
            attributes["AWS.SNS.SMS.SenderID"] = {
                "DataType": "String",
                "StringValue": self._sender_id,
            }
        try:
            answer = await asyncio.to_thread(
                self._client.publish,
                PhoneNumber=outgoing.to,
                Message=outgoing.message.text,
                MessageAttributes=attributes,
            )
        except self._errors as exc:
            raise _failure(exc, "SNS") from exc
        return str(answer["MessageId"])

    async def close(self) -> None:
        """boto3 clients need no closing."""


class SesEmailProvider:
    """Email through `ses.send_email`, with a text and an HTML body."""

    name = "ses"
    channels = frozenset({Channel.EMAIL})

    def __init__(
        self, config: AwsConfig, *, source: str, configuration_set: str | None = None
    ) -> None:
        self._client = _client("ses", config)
        self._errors = _errors()
        self._source = source
        self._configuration_set = configuration_set

    async def send(self, outgoing: OutgoingMessage) -> str | None:
        """Send; the SES MessageId is the provider message id."""
        m = outgoing.message
        body: dict[str, Any] = {"Text": {"Data": m.text, "Charset": "UTF-8"}}
        if m.html:
            body["Html"] = {"Data": m.html, "Charset": "UTF-8"}
        kwargs: dict[str, Any] = {
            "Source": self._source,
            "Destination": {"ToAddresses": [outgoing.to]},
            "Message": {"Subject": {"Data": m.subject or m.text, "Charset": "UTF-8"}, "Body": body},
        }
        if self._configuration_set:
            kwargs["ConfigurationSetName"] = self._configuration_set
        try:
            answer = await asyncio.to_thread(self._client.send_email, **kwargs)
        except self._errors as exc:
            raise _failure(exc, "SES") from exc
        return str(answer["MessageId"])

    async def close(self) -> None:
        """boto3 clients need no closing."""
