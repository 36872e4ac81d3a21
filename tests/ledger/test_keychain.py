"""The ledger's key chain: a verifier that kept one key trusts exactly the keys the chain links to it, each for
the tree sizes it covers; every alteration of the chain is refused."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from fabguard.ledger.checkpoint import Checkpoint, CheckpointError, sign_checkpoint, verifier_key
from fabguard.ledger.keychain import (
    KeyChainError,
    LedgerKey,
    chain_document,
    keys_for,
    open_checkpoint,
    retirement_statement,
    sign_statement,
    transition_statement,
    trusted_keys,
    verifies,
)

ORIGIN = "fab.example/fabguard-ledger"


def _chain(n: int, *, retire_all_but_last: bool = True) -> tuple[list[ed25519.Ed25519PrivateKey], dict[str, Any]]:
    """``n`` keys, each endorsed by the one before at size 100*i, each retired by the next at 100*i + 50."""
    privates = [ed25519.Ed25519PrivateKey.generate() for _ in range(n)]
    verifiers = [verifier_key(ORIGIN, k.public_key()) for k in privates]
    keys: list[LedgerKey] = []
    for i, v in enumerate(verifiers):
        start = 100 * i
        endorsement = (
            sign_statement(privates[i - 1], transition_statement(ORIGIN, verifiers[i - 1], v, start)) if i else None
        )
        until = retirement = None
        if i < n - 1 and retire_all_but_last:
            until = 100 * (i + 1) + 50
            retirement = sign_statement(privates[i + 1], retirement_statement(ORIGIN, v, until))
        keys.append(LedgerKey(v, start, until, endorsement, retirement))
    return privates, chain_document(ORIGIN, keys)


def _note(size: int, *keys: ed25519.Ed25519PrivateKey) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, size, bytes(32)), ORIGIN, *keys)


def test_a_verifier_trusts_the_keys_after_and_before_the_one_it_kept() -> None:
    _, doc = _chain(3)
    verifiers = [k["verifier"] for k in doc["keys"]]
    for anchor in verifiers:  # whichever it kept, it reaches all three
        assert [k.verifier for k in trusted_keys(doc, anchor)] == verifiers


def test_each_key_opens_only_the_checkpoints_of_its_sizes() -> None:
    privates, doc = _chain(2)
    keys = trusted_keys(doc, doc["keys"][0]["verifier"])
    assert open_checkpoint(_note(40, privates[0]), keys).size == 40
    assert open_checkpoint(_note(120, privates[0], privates[1]), keys).size == 120  # the overlap: both sign
    assert open_checkpoint(_note(120, privates[1]), keys).size == 120
    assert open_checkpoint(_note(900, privates[1]), keys).size == 900
    with pytest.raises(CheckpointError, match=r"covers sizes 0\.\.150"):
        open_checkpoint(_note(151, privates[0]), keys)  # the old key, past its retirement
    with pytest.raises(CheckpointError, match=r"covers sizes 100\.\."):
        open_checkpoint(_note(99, privates[1]), keys)  # the new key, before it was endorsed


def test_a_checkpoint_with_two_signatures_verifies_with_the_old_key_alone() -> None:
    """What a verifier that never learnt the new key sees during the overlap."""
    privates, doc = _chain(2, retire_all_but_last=False)
    old_only = keys_for(doc["keys"][0]["verifier"], None)
    assert open_checkpoint(_note(130, privates[0], privates[1]), old_only).size == 130


@pytest.mark.parametrize(
    "alter",
    [
        lambda d: d["keys"][1].update(endorsement=d["keys"][2]["endorsement"]),
        lambda d: d["keys"][1].update(from_size=d["keys"][1]["from_size"] + 1),  # the endorsement named another
        lambda d: d["keys"][0].update(until_size=d["keys"][0]["until_size"] + 10),  # a longer life for the old key
        lambda d: d["keys"].reverse(),
        lambda d: d["keys"].pop(1),
        lambda d: d.update(origin="other.example/fabguard-ledger"),
        lambda d: d["keys"][2].update(until_size=500, retirement=d["keys"][0]["retirement"]),
        lambda d: d.update(format="something-else"),
    ],
)
def test_an_altered_chain_is_refused(alter: Any) -> None:
    _, doc = _chain(3)
    bad = copy.deepcopy(doc)
    alter(bad)
    anchors = [k["verifier"] for k in doc["keys"] if k["verifier"] in {b["verifier"] for b in bad["keys"]}]
    assert anchors
    for anchor in anchors:  # whichever key the verifier kept
        with pytest.raises(KeyChainError):
            trusted_keys(bad, anchor)


def test_a_forged_key_appended_to_the_chain_is_refused() -> None:
    _, doc = _chain(2)
    attacker = ed25519.Ed25519PrivateKey.generate()
    forged = verifier_key(ORIGIN, attacker.public_key())
    bad = copy.deepcopy(doc)
    last = bad["keys"][-1]
    last.update(
        until_size=300, retirement=sign_statement(attacker, retirement_statement(ORIGIN, last["verifier"], 300))
    )
    bad["keys"].append(
        LedgerKey(
            forged, 250, None, sign_statement(attacker, transition_statement(ORIGIN, last["verifier"], forged, 250))
        ).to_json()
    )
    with pytest.raises(KeyChainError, match="endorsement"):
        trusted_keys(bad, doc["keys"][0]["verifier"])


def test_a_key_before_the_anchor_that_never_retired_is_not_trusted() -> None:
    """During an overlap, a verifier that kept only the new key has nothing vouching for the old one."""
    privates, doc = _chain(2, retire_all_but_last=False)
    doc["keys"][0]["until_size"] = None
    keys = trusted_keys(doc, doc["keys"][1]["verifier"])
    assert [k.verifier for k in keys] == [doc["keys"][1]["verifier"]]
    with pytest.raises(CheckpointError):
        open_checkpoint(_note(10, privates[0]), keys)


def test_a_key_not_in_the_chain_reaches_nothing() -> None:
    _, doc = _chain(2)
    stranger = verifier_key(ORIGIN, ed25519.Ed25519PrivateKey.generate().public_key())
    with pytest.raises(KeyChainError, match="not in this chain"):
        trusted_keys(doc, stranger)


def test_a_signed_document_verifies_with_any_trusted_key() -> None:
    privates, doc = _chain(3)
    keys = trusted_keys(doc, doc["keys"][2]["verifier"])
    message = b"a royalty statement"
    assert all(verifies(message, k.sign(message), keys) for k in privates)
    assert not verifies(message, ed25519.Ed25519PrivateKey.generate().sign(message), keys)
    assert not verifies(b"altered", privates[0].sign(message), keys)
