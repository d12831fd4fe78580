"""The provider port: one interface for every way a message leaves clave."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from clave.verify.messages import RenderedMessage
from clave.verify.models import Channel


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A rendered message for one destination."""

    channel: Channel
    to: str
    message: RenderedMessage
    verification_id: str
    attempt_id: int
    locale: str = "en"
    # The Twilio Messaging Service the tenant configured for the destination's country (SMS).
    messaging_service_sid: str | None = None


class DeliveryError(Exception):
    """A provider did not take the message; `permanent` says whether retrying can help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Provider(Protocol):
    """Something that delivers messages on some channels."""

    name: str
    channels: frozenset[Channel]

    async def send(self, outgoing: OutgoingMessage) -> str | None:
        """Deliver, returning the provider's message id if it gives one; raise DeliveryError."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class ProviderRouter:
    """Per channel, the ordered providers to try (the first that takes the message wins)."""

    def __init__(self, routes: Mapping[Channel, Sequence[Provider]]) -> None:
        self._routes = {channel: tuple(providers) for channel, providers in routes.items()}

    def providers(self, channel: Channel) -> tuple[Provider, ...]:
        """The providers for `channel`, in order; empty when none is configured."""
        return self._routes.get(channel, ())

    def available(self, channel: Channel) -> bool:
        """Whether any provider serves `channel`."""
        return bool(self._routes.get(channel))

    def all(self) -> list[Provider]:
        """Every distinct provider."""
        seen: dict[int, Provider] = {}
        for providers in self._routes.values():
            for provider in providers:
                seen.setdefault(id(provider), provider)
        return list(seen.values())
