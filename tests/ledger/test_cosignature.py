"""C2SP tlog-cosignature (Ed25519 cosignature/v1) and the witness's rule: cosign extensions, refuse forks."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from fabguard.ledger import merkle
from fabguard.ledger.checkpoint import Checkpoint, CheckpointError, sign_checkpoint, verifier_key
from fabguard.ledger.cosignature import (
    CosignatureError,
    append_cosignatures,
    cosign,
    cosigned_message,
    cosigner_verifier_key,
    distinct_keys,
    parse_cosigner_key,
    require_cosignatures,
    valid_cosigners,
    verify_cosignature,
)
from fabguard.ledger.witness import AddCheckpoint, WitnessRefusal, WitnessState, check_extension, format_add_checkpoint

ORIGIN = "oem.example/fabguard-ledger"
W1 = "cm-shenzhen.example/witness"
T = 1_790_000_000


@pytest.fixture(scope="module")
def log_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def wkey() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


class Log:
    """A whole log in memory, signed by ``key``: leaves, roots, proofs."""

    def __init__(self, key: ed25519.Ed25519PrivateKey, entries: list[bytes]) -> None:
        self.key = key
        self.leaves = [merkle.leaf_hash(e) for e in entries]

    def get(self, level: int, idx: int) -> bytes:
        return merkle.mth(self.leaves[idx << level : (idx + 1) << level])

    def note(self, size: int) -> str:
        return sign_checkpoint(Checkpoint(ORIGIN, size, merkle.mth(self.leaves[:size])), ORIGIN, self.key)

    def request(self, old: int, size: int) -> AddCheckpoint:
        proof = merkle.consistency_proof(self.get, old, size) if 0 < old < size else []
        return AddCheckpoint.parse(format_add_checkpoint(old, proof, self.note(size)))


def body(note: str) -> str:
    return note[: note.index("\n\n") + 1]


def test_the_signed_message_and_the_line_follow_tlog_cosignature(wkey: ed25519.Ed25519PrivateKey) -> None:
    b = f"{ORIGIN}\n7\n{base64.b64encode(bytes(32)).decode()}\n"
    assert cosigned_message(b, T) == f"cosignature/v1\ntime {T}\n{b}".encode()
    line = cosign(b, W1, wkey, T)
    dash, name, blob64 = line.rstrip("\n").split(" ")
    blob = base64.b64decode(blob64)
    raw = wkey.public_key().public_bytes_raw()
    assert (dash, name, len(blob)) == ("\u2014", W1, 4 + 8 + 64)
    assert blob[:4] == hashlib.sha256(W1.encode() + b"\n\x04" + raw).digest()[:4]
    assert int.from_bytes(blob[4:12], "big") == T
    wkey.public_key().verify(blob[12:], cosigned_message(b, T))
    key = parse_cosigner_key(cosigner_verifier_key(W1, wkey.public_key()))
    assert verify_cosignature(b, line, key) == T


def test_a_verifier_key_made_by_the_go_implementation_parses() -> None:
    # transparency-dev/formats note_cosigv1_test.go: a native type-0x04 verifier key and its id.
    key = parse_cosigner_key("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2")
    assert key.key_id.hex() == "da77ade7" and key.name == "remora.n621.de"


@pytest.mark.parametrize(
    "text",
    [
        "nameonly",
        "w+00000000+" + base64.b64encode(b"\x04" + bytes(32)).decode(),  # wrong id
        "w+12345678+" + base64.b64encode(b"\x01" + bytes(32)).decode(),  # a checkpoint key, not a cosigner key
        "w+12345678+!!!",
        "has space+12345678+BAAA",
    ],
)
def test_a_malformed_cosigner_key_is_refused(text: str) -> None:
    with pytest.raises(CosignatureError) as exc:
        parse_cosigner_key(text)
    assert exc.value.code == "witness_key_invalid"


def test_a_cosignature_over_a_modified_checkpoint_fails(log_key, wkey) -> None:  # type: ignore[no-untyped-def]
    log = Log(log_key, [b"a", b"b", b"c"])
    note = log.note(3)
    line = cosign(body(note), W1, wkey, T)
    key = parse_cosigner_key(cosigner_verifier_key(W1, wkey.public_key()))
    assert valid_cosigners(append_cosignatures(note, [line]), [key]) == {key.verifier_key: T}
    changed = body(note).replace("\n3\n", "\n2\n")
    with pytest.raises(CosignatureError, match="does not verify"):
        verify_cosignature(changed, line, key)
    # The timestamp is signed too: moving it breaks the signature.
    name, blob64 = line.split(" ")[1:]
    blob = bytearray(base64.b64decode(blob64))
    blob[11] ^= 1
    forged = f"\u2014 {name} {base64.b64encode(bytes(blob)).decode()}\n"
    with pytest.raises(CosignatureError):
        verify_cosignature(body(note), forged, key)


def test_an_old_cosignature_replayed_under_a_new_checkpoint_fails(log_key, wkey) -> None:  # type: ignore[no-untyped-def]
    log = Log(log_key, [b"a", b"b", b"c", b"d"])
    old_line = cosign(body(log.note(3)), W1, wkey, T)
    key = parse_cosigner_key(cosigner_verifier_key(W1, wkey.public_key()))
    with pytest.raises(CosignatureError, match="does not verify"):
        valid_cosigners(append_cosignatures(log.note(4), [old_line]), [key])


def test_unknown_cosigners_are_ignored_and_future_times_refused(log_key, wkey) -> None:  # type: ignore[no-untyped-def]
    log = Log(log_key, [b"a"])
    note = log.note(1)
    other = ed25519.Ed25519PrivateKey.generate()
    lines = [cosign(body(note), "other.example/w", other, T), cosign(body(note), W1, wkey, T + 10_000)]
    key = parse_cosigner_key(cosigner_verifier_key(W1, wkey.public_key()))
    cosigned = append_cosignatures(note, lines)
    assert cosigned.count("\u2014 ") == 3 and append_cosignatures(cosigned, lines) == cosigned
    assert list(valid_cosigners(cosigned, [key], now=T + 10_000)) == [key.verifier_key]
    with pytest.raises(CosignatureError, match="future"):
        valid_cosigners(cosigned, [key], now=T)


def test_the_witness_cosigns_extensions_and_refuses_a_fork(log_key) -> None:  # type: ignore[no-untyped-def]
    verifier = verifier_key(ORIGIN, log_key.public_key())
    shared = [b"e%d" % i for i in range(5)]
    honest = Log(log_key, shared + [b"honest-%d" % i for i in range(4)])
    forked = Log(log_key, shared + [b"forked-%d" % i for i in range(4)])

    state = WitnessState(ORIGIN)
    for old, size in ((0, 5), (5, 7)):
        cp = check_extension(state, honest.request(old, size), verifier)
        state = WitnessState(ORIGIN, cp.size, cp.root)
    assert state.size == 7
    # The shared prefix is still fine from the other log's point of view...
    assert check_extension(WitnessState(ORIGIN, 5, merkle.mth(forked.leaves[:5])), forked.request(5, 9), verifier)
    # ...but once the witness saw the honest size 7, the forked log cannot pass.
    with pytest.raises(WitnessRefusal) as same_size:
        check_extension(state, forked.request(7, 7), verifier)
    assert same_size.value.code == "witness_fork" and "FORK" in same_size.value.message
    with pytest.raises(WitnessRefusal) as bigger:
        check_extension(state, forked.request(7, 9), verifier)
    assert bigger.value.code == "witness_proof_invalid"
    with pytest.raises(WitnessRefusal) as smaller:
        check_extension(state, honest.request(0, 6), verifier)
    assert smaller.value.code == "witness_rollback"
    with pytest.raises(WitnessRefusal) as stale:
        check_extension(state, honest.request(5, 9), verifier)
    assert stale.value.code == "witness_old_size"
    assert check_extension(state, honest.request(7, 9), verifier).size == 9


def test_a_checkpoint_not_signed_by_the_log_is_not_cosigned(log_key) -> None:  # type: ignore[no-untyped-def]
    impostor = Log(ed25519.Ed25519PrivateKey.generate(), [b"a"])
    with pytest.raises(CheckpointError):
        check_extension(WitnessState(ORIGIN), impostor.request(0, 1), verifier_key(ORIGIN, log_key.public_key()))


@pytest.mark.parametrize(
    "text", ["", "old 1\n", "new 1\n\nx", "old 01\n\nx", "old 1\nnot-a-hash\n\nx", "old 1\n" + "QQ==\n" + "\nx"]
)
def test_a_malformed_add_checkpoint_body_is_refused(text: str) -> None:
    with pytest.raises(WitnessRefusal) as exc:
        AddCheckpoint.parse(text)
    assert exc.value.code == "witness_request_invalid" and exc.value.status == 422


def test_a_damaged_state_is_refused() -> None:
    with pytest.raises(WitnessRefusal) as exc:
        WitnessState.from_dict({"origin": ORIGIN, "size": 3, "root": "AAAA"})
    assert exc.value.code == "witness_state_invalid"
    s = WitnessState(ORIGIN, 3, bytes(32))
    assert WitnessState.from_dict(s.to_dict()) == s


def test_the_cosignature_covers_extension_lines(wkey: ed25519.Ed25519PrivateKey) -> None:
    b = f"{ORIGIN}\n7\n{base64.b64encode(bytes(32)).decode()}\nextension one\n"
    line = cosign(b, W1, wkey, T)
    key = parse_cosigner_key(cosigner_verifier_key(W1, wkey.public_key()))
    assert verify_cosignature(b, line, key) == T
    with pytest.raises(CosignatureError):
        verify_cosignature(b.replace("one", "two"), line, key)


def test_one_key_under_two_names_counts_as_one_witness(log_key, wkey) -> None:  # type: ignore[no-untyped-def]
    log = Log(log_key, [b"a", b"b"])
    note = log.note(2)
    names = (W1, "cm-penang.example/witness")
    keys = [parse_cosigner_key(cosigner_verifier_key(n, wkey.public_key())) for n in names]
    cosigned = append_cosignatures(note, [cosign(body(note), n, wkey, T) for n in names])
    assert distinct_keys(keys) == 1
    assert require_cosignatures({"cp": cosigned}, keys, 1, now=T).size == 2
    with pytest.raises(
        CosignatureError, match=r"carries 1 valid cosignatures of the 2 witnesses given .*counted by distinct key"
    ):
        require_cosignatures({"cp": cosigned}, keys, 2, now=T)
    other = ed25519.Ed25519PrivateKey.generate()
    second = parse_cosigner_key(cosigner_verifier_key("cm-b.example/witness", other.public_key()))
    both = append_cosignatures(cosigned, [cosign(body(note), "cm-b.example/witness", other, T)])
    assert require_cosignatures({"cp": both}, [*keys, second], 2, now=T).size == 2
