"""C2SP signed-note checkpoints: round trip, and every way a note can be wrong."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from fabguard.domain.errors import FabGuardError
from fabguard.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    open_signed_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verifier_key,
)

NAME = "fabguard.example/fabguard-ledger"


@pytest.fixture
def key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def test_signed_note_round_trips_in_the_c2sp_text_form(key: ed25519.Ed25519PrivateKey) -> None:
    cp = Checkpoint(NAME, 42, bytes(range(32)))
    note = sign_checkpoint(cp, NAME, key)
    lines = note.split("\n")
    assert lines[:3] == [NAME, "42", base64.b64encode(bytes(range(32))).decode()]
    assert lines[3] == "" and lines[4].startswith(f"\u2014 {NAME} ")
    assert len(base64.b64decode(lines[4].split(" ")[2])) == 4 + 64
    assert open_signed_checkpoint(note, verifier_key(NAME, key.public_key())) == cp


def test_another_key_or_a_changed_body_does_not_verify(key: ed25519.Ed25519PrivateKey) -> None:
    note = sign_checkpoint(Checkpoint(NAME, 42, bytes(32)), NAME, key)
    other = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(CheckpointError, match="no signature"):
        open_signed_checkpoint(note, verifier_key(NAME, other.public_key()))
    with pytest.raises(CheckpointError, match="does not verify"):
        open_signed_checkpoint(note.replace("\n42\n", "\n43\n"), verifier_key(NAME, key.public_key()))


@pytest.mark.parametrize(
    "body",
    [
        "",
        "origin\n",
        "origin\n12\n",
        "origin\nx\nAAAA\n",
        "origin\n012\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n1\n" + base64.b64encode(bytes(31)).decode() + "\n",
        "origin\n1\n!!!\n",
    ],
)
def test_malformed_bodies_are_refused(body: str) -> None:
    with pytest.raises(CheckpointError):
        parse_checkpoint(body)


def test_verifier_key_with_a_wrong_id_is_refused(key: ed25519.Ed25519PrivateKey) -> None:
    name, _kid, rest = verifier_key(NAME, key.public_key()).split("+", 2)
    with pytest.raises(CheckpointError):
        open_signed_checkpoint(sign_checkpoint(Checkpoint(NAME, 1, bytes(32)), NAME, key), f"{name}+00000000+{rest}")


def test_a_malformed_checkpoint_is_a_fabguard_error_still_caught_as_a_value_error() -> None:
    with pytest.raises(ValueError, match="malformed checkpoint origin or size") as caught:
        parse_checkpoint(f"{NAME}\nforty-two\n{base64.b64encode(bytes(32)).decode()}\n")
    assert isinstance(caught.value, FabGuardError)
    assert (caught.value.code, caught.value.status) == ("checkpoint_invalid", 422)
