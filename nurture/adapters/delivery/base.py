"""The transport interface the send phase talks to.

Declared with the other ports in `nurture.services.ports` (the services depend on it, not
on adapters); re-exported here so the transports keep importing it from their package."""

from __future__ import annotations

from nurture.services.ports import Delivery, Transport, TransportAuthError

__all__ = ["Delivery", "Transport", "TransportAuthError"]
