"""API keys: a consumer is found by the SHA-256 of the key it presents; the key itself is never stored."""

from __future__ import annotations

import hashlib
import re

from app.auth.errors import Rejected
from app.auth.principal import Principal
from app.auth.settings import ApiKeySettings

__all__ = ["MAX_KEY_LENGTH", "consumer_principal"]

MAX_KEY_LENGTH = 512
_KEY = re.compile(r"[\x21-\x7E]+")


def consumer_principal(settings: ApiKeySettings, key: str) -> Principal:
    """The consumer whose stored hash matches ``key``; Rejected otherwise.

    A plain SHA-256 is enough here, unlike for passwords: keys are random and long (128 bits
    or more), so there is no dictionary to try and no brute force that a slow hash would stop.
    Looking the digest up in a dict does not leak the key through timing: an attacker controls
    the key, not its digest, so matching digest prefixes reveal nothing usable.
    """
    if len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise Rejected("The API key is malformed.")
    consumer = settings.consumers.get(hashlib.sha256(key.encode("ascii")).hexdigest())
    if consumer is None:
        raise Rejected("The API key is not known.")
    return Principal(scheme="api_key", subject=None, consumer=consumer.name, scopes=consumer.scopes,
                     plan=consumer.plan)
