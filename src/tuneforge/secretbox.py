"""The cipher of users' secrets (API keys, tokens), kept low so that workers can read them.

Values are encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from
the server's secret key (`Settings.session_secret`) with HKDF, so no other setting is needed.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tuneforge.errors import SecretUnreadable
from tuneforge.settings import Settings

KEY_INFO = b"tuneforge secrets v1"


class SecretBox:
    """Seals a secret's value for storage and opens it again, under this server's key."""

    def __init__(self, settings: Settings) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_INFO).derive(
            settings.session_secret.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, value: str) -> bytes:
        return self._fernet.encrypt(value.encode())

    def open(self, name: str, ciphertext: bytes) -> str:
        """The value of the secret `name`; `SecretUnreadable` when the key has changed since."""
        try:
            return self._fernet.decrypt(ciphertext).decode()
        except InvalidToken:
            raise SecretUnreadable(
                f"The secret {name} can no longer be read: the server's secret key "
                "(TUNEFORGE_SECRET_KEY) changed since it was set. Set it again."
            ) from None
