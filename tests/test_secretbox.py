"""The secrets' cipher: a value sealed with the published key derivation (HKDF-SHA256 of the
server's secret key, info `tuneforge secrets v1`) still opens, so secrets stored by an earlier
version stay readable; another server key gives the clear error."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tuneforge.errors import SecretUnreadable
from tuneforge.secretbox import SecretBox
from tuneforge.settings import Settings


def _stored_by_an_earlier_version(secret_key: str, value: str) -> bytes:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"tuneforge secrets v1")
    fernet = Fernet(base64.urlsafe_b64encode(key.derive(secret_key.encode())))
    return fernet.encrypt(value.encode())


def test_opens_what_the_published_derivation_sealed(
    make_settings: Callable[..., Settings],
) -> None:
    box = SecretBox(make_settings(secret_key="k" * 40))
    assert box.open("HF_TOKEN", _stored_by_an_earlier_version("k" * 40, "hf_abc")) == "hf_abc"
    sealed = box.seal("hf_abc")
    assert b"hf_abc" not in sealed
    assert box.open("HF_TOKEN", sealed) == "hf_abc"


def test_another_server_key_cannot_open_it(make_settings: Callable[..., Settings]) -> None:
    sealed = SecretBox(make_settings(secret_key="k" * 40)).seal("hf_abc")
    with pytest.raises(SecretUnreadable) as error:
        SecretBox(make_settings(secret_key="other" * 8)).open("HF_TOKEN", sealed)
    assert str(error.value) == (
        "The secret HF_TOKEN can no longer be read: the server's secret key "
        "(TUNEFORGE_SECRET_KEY) changed since it was set. Set it again."
    )
