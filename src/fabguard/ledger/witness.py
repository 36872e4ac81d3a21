"""The witness's rule (C2SP ``tlog-witness``): cosign a checkpoint only if it extends the last one cosigned.

A witness keeps one state per log: the origin, and the size and root of the newest checkpoint it
cosigned. A new checkpoint, signed by the log's key, comes with a consistency proof from that size
(the ``add-checkpoint`` body: ``old <size>``, the proof's hashes one per line in base64, a blank line,
the signed checkpoint). The witness cosigns only when the proof shows the new tree extends the old
one; any fork (same size and another root, a smaller size, a proof that does not verify) is refused
and the state kept. Pure: the caller reads and writes the state.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from fabguard.domain.errors import FabGuardError
from fabguard.ledger.checkpoint import Checkpoint, open_signed_checkpoint
from fabguard.ledger.merkle import EMPTY_ROOT, HASH_SIZE, ProofError, verify_consistency

__all__ = ["AddCheckpoint", "WitnessRefusal", "WitnessState", "check_extension", "format_add_checkpoint"]

# tlog-witness: a client sends at most 63 consistency proof lines.
MAX_PROOF_LINES = 63


class WitnessRefusal(FabGuardError):
    """The witness will not cosign this checkpoint; its state is unchanged."""

    code = "witness_fork"
    status = 409


@dataclass(frozen=True, slots=True)
class WitnessState:
    origin: str
    size: int = 0
    root: bytes = EMPTY_ROOT

    def to_dict(self) -> dict[str, object]:
        return {"origin": self.origin, "size": self.size, "root": base64.b64encode(self.root).decode()}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> WitnessState:
        origin, size, root = data.get("origin"), data.get("size"), data.get("root")
        if not isinstance(origin, str) or not isinstance(size, int) or size < 0 or not isinstance(root, str):
            raise WitnessRefusal(
                "the witness state is damaged (origin, size, root)", code="witness_state_invalid", status=422
            )
        try:
            raw = base64.b64decode(root, validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != HASH_SIZE:
            raise WitnessRefusal(
                "the witness state's root is not a 32-byte hash", code="witness_state_invalid", status=422
            )
        return cls(origin, size, raw)


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """What a log hands a witness: the old size, the consistency proof from it, the new signed checkpoint."""

    old: int
    proof: tuple[bytes, ...]
    note: str

    @classmethod
    def parse(cls, text: str) -> AddCheckpoint:
        head, sep, note = text.partition("\n\n")
        lines = head.split("\n")
        if not sep or not lines[0].startswith("old "):
            raise _bad("an add-checkpoint body is 'old <size>', proof lines, a blank line, then the checkpoint")
        size = lines[0][4:]
        if not size.isdigit() or (size != "0" and size.startswith("0")):
            raise _bad(f"malformed old size {size!r}")
        if len(lines) - 1 > MAX_PROOF_LINES:
            raise _bad(f"a consistency proof has at most {MAX_PROOF_LINES} lines")
        proof = []
        for line in lines[1:]:
            try:
                h = base64.b64decode(line, validate=True)
            except binascii.Error:
                h = b""
            if len(h) != HASH_SIZE:
                raise _bad("a consistency proof line is one base64 SHA-256 hash")
            proof.append(h)
        return cls(int(size), tuple(proof), note)


def _bad(message: str) -> WitnessRefusal:
    return WitnessRefusal(message, code="witness_request_invalid", status=422)


def format_add_checkpoint(old: int, proof: list[bytes] | tuple[bytes, ...], note: str) -> str:
    lines = [f"old {old}"] + [base64.b64encode(h).decode() for h in proof]
    return "\n".join(lines) + "\n\n" + note


def check_extension(state: WitnessState, request: AddCheckpoint, log_verifier: str) -> Checkpoint:
    """The new checkpoint if the witness may cosign it (signed by the log, consistent with ``state``)."""
    cp = open_signed_checkpoint(request.note, log_verifier)
    if cp.origin != state.origin:
        raise WitnessRefusal(
            f"this witness follows {state.origin!r}, not {cp.origin!r}", code="witness_wrong_log", status=404
        )
    if cp.size < state.size:
        raise WitnessRefusal(
            f"refused: the checkpoint has {cp.size} entries but this witness already cosigned {state.size}: "
            "the log went back (a rollback or a fork)",
            code="witness_rollback",
        )
    if cp.size == state.size and cp.root != state.root:
        raise WitnessRefusal(
            f"refused: FORK at size {cp.size}: the checkpoint's root {base64.b64encode(cp.root).decode()} is not "
            f"the root {base64.b64encode(state.root).decode()} this witness cosigned for that size",
            code="witness_fork",
        )
    if request.old != state.size:
        raise WitnessRefusal(
            f"the proof starts at size {request.old} but this witness last cosigned size {state.size}",
            code="witness_old_size",
        )
    try:
        verify_consistency(state.size, cp.size, state.root, cp.root, request.proof)
    except ProofError as exc:
        raise WitnessRefusal(
            f"refused: the tree of {cp.size} entries is not an extension of the {state.size} this witness "
            f"cosigned ({exc}): a fork or a rewritten history",
            code="witness_proof_invalid",
            status=422,
        ) from None
    return cp
