"""``fabguard witness ...``: a CM site's witness, run on the site's side with the site's own key.

It keeps a state file (the log's origin and verifier key, the size and root it last cosigned, where
its key lives) and cosigns a new checkpoint only when a consistency proof shows it extends that one
(``fabguard.ledger.witness``). Online it fetches the C2SP add-checkpoint body from the server and posts
the cosignature back with the site's token; offline it works on the files it is handed.
"""

from __future__ import annotations

import fcntl
import json
import os
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from cryptography.hazmat.primitives.asymmetric import ed25519

from fabguard.cli.common import TOKEN_ENV, JsonOption, command, console, fail, print_json
from fabguard.domain.errors import ConfigurationError
from fabguard.ledger.checkpoint import CheckpointError, parse_verifier_key
from fabguard.ledger.cosignature import (
    CosignatureError,
    Ed25519Signer,
    append_cosignatures,
    check_name,
    cosign,
    cosigner_verifier_key,
    split_note,
)
from fabguard.ledger.witness import AddCheckpoint, WitnessRefusal, WitnessState, check_extension
from fabguard.pki.keys import passphrase_from_env, pin_from_env, read_encrypted_key, write_encrypted_key

witness_app = typer.Typer(
    help="A CM site's witness: cosign the OEM's checkpoints it checked for consistency, refuse forks.",
    no_args_is_help=True,
)

StateOpt = Annotated[Path, typer.Option("--state", help="The witness's state file")]
_DEFAULT_STATE = Path("fabguard-witness.json")


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fail(f"no witness state at {path}: run 'fabguard witness init' first")
    except (OSError, ValueError) as exc:
        fail(f"cannot read the witness state {path}: {exc}")
    if not isinstance(data, dict) or not isinstance(data.get("log"), dict):
        fail(f"the witness state {path} is damaged")
    return data


def _write_state(path: Path, data: dict[str, Any]) -> None:
    """Replace the state file in one step (a crash leaves the old state or the new, never half of one)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One cosigning at a time per state: checking against the state and saving the new one are atomic."""
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextmanager
def _signer(key: dict[str, Any]) -> Iterator[Ed25519Signer]:
    """The witness key, ready to sign; a token's session is closed afterwards."""
    if key.get("type") == "pkcs11":
        # Imported here: python-pkcs11 is optional (the "hsm" extra), needed only for a key in a token.
        from fabguard.pki.pkcs11 import Pkcs11KeyBackend
        from fabguard.pki.pkcs11_ed25519 import load_ed25519

        with Pkcs11KeyBackend(str(key["module"]), str(key["token"]), pin_from_env()) as backend:
            yield load_ed25519(backend, str(key["label"]))
        return
    private = read_encrypted_key(Path(str(key["path"])), passphrase_from_env())
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise ConfigurationError(f"{key['path']} is not an Ed25519 key")
    yield private


@command(witness_app, "init")
def init(
    name: Annotated[str, typer.Option(help="The witness's name, e.g. cm-shenzhen.example/witness")],
    log_key: Annotated[Path, typer.Option(help="The OEM ledger's verifier key (fabguard ledger key)")],
    key_file: Annotated[
        Path | None, typer.Option(help="Encrypted PKCS#8 file for the witness key (made if absent)")
    ] = None,
    pkcs11_module: Annotated[str | None, typer.Option(help="PKCS#11 module, for a key in a token")] = None,
    pkcs11_token: Annotated[str | None, typer.Option(help="Token label")] = None,
    pkcs11_label: Annotated[str | None, typer.Option(help="Key label in the token (made if absent)")] = None,
    state: StateOpt = _DEFAULT_STATE,
) -> None:
    """Make (or take) the witness key and a fresh state; print the cosigner key to register with the OEM.

    The key passphrase comes from FABGUARD_KEY_PASSPHRASE(_FILE), a token PIN from FABGUARD_PKCS11_PIN(_FILE)."""
    check_name(name)
    if state.exists():
        fail(f"{state} exists: a witness never starts its state over (that would forget what it cosigned)")
    try:
        verifier = log_key.read_text(encoding="utf-8").strip()
        origin = parse_verifier_key(verifier)[0]
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read the log key {log_key}: {exc}")
    except CheckpointError as exc:
        fail(f"--log-key {log_key} is not a ledger verifier key: {exc.message}")
    public: ed25519.Ed25519PublicKey
    if pkcs11_module or pkcs11_token or pkcs11_label:
        if not (pkcs11_module and pkcs11_token and pkcs11_label) or key_file:
            fail("a key in a token needs --pkcs11-module, --pkcs11-token and --pkcs11-label (and no --key-file)")
        from fabguard.pki.pkcs11 import Pkcs11KeyBackend
        from fabguard.pki.pkcs11_ed25519 import generate_ed25519, load_ed25519

        with Pkcs11KeyBackend(pkcs11_module, pkcs11_token, pin_from_env()) as backend:
            try:
                public = load_ed25519(backend, pkcs11_label).public_key()
            except ConfigurationError:
                public = generate_ed25519(backend, pkcs11_label).public_key()
        key: dict[str, Any] = {"type": "pkcs11", "module": pkcs11_module, "token": pkcs11_token, "label": pkcs11_label}
    elif key_file:
        if key_file.exists():
            with _signer({"path": str(key_file)}) as existing:
                public = existing.public_key()
        else:
            private = ed25519.Ed25519PrivateKey.generate()
            write_encrypted_key(private, key_file, passphrase_from_env())
            public = private.public_key()
        key = {"type": "file", "path": str(key_file.resolve())}
    else:
        fail("name where the witness key lives: --key-file, or --pkcs11-module/--pkcs11-token/--pkcs11-label")
    cosigner = cosigner_verifier_key(name, public)
    _write_state(
        state,
        {
            "name": name,
            "cosigner_key": cosigner,
            "key": key,
            "log_key": verifier,
            "log": WitnessState(origin).to_dict(),
        },
    )
    console.out(cosigner)


@command(witness_app, "key")
def key(state: StateOpt = _DEFAULT_STATE) -> None:
    """Print the witness's cosigner key (name+id+key), for the OEM to register and auditors to keep."""
    console.out(_read_state(state)["cosigner_key"])


@command(witness_app, "status")
def status(state: StateOpt = _DEFAULT_STATE, as_json: JsonOption = False) -> None:
    """The log this witness follows and the checkpoint it last cosigned."""
    data = _read_state(state)
    log = WitnessState.from_dict(data["log"])
    if as_json:
        print_json({"name": data["name"], "origin": log.origin, "size": log.size, "root": data["log"]["root"]})
        return
    console.print(f"{data['name']} follows {log.origin}: last cosigned size {log.size}, root {data['log']['root']}")


def _cosign(state: Path, request_text: str) -> tuple[int, str, str]:
    """Check ``request_text`` against the state and cosign it; the state is saved before the answer leaves.
    Returns the size, the cosignature line and the cosigned note (the checkpoint with the line under it)."""
    data = _read_state(state)
    current = WitnessState.from_dict(data["log"])
    request = AddCheckpoint.parse(request_text)
    checkpoint = check_extension(current, request, data["log_key"])
    body, _ = split_note(request.note)  # the whole body as the log signed it, extension lines included
    with _signer(data["key"]) as signer:
        line = cosign(body, data["name"], signer, int(time.time()))
    data["log"] = WitnessState(current.origin, checkpoint.size, checkpoint.root).to_dict()
    _write_state(state, data)
    return checkpoint.size, line, append_cosignatures(request.note, [line])


def _client(server: str, cacert: Path | None) -> httpx.Client:
    token = os.environ.get(TOKEN_ENV)
    if not token:
        fail(f"talking to the server needs the site's API token in {TOKEN_ENV}")
    return httpx.Client(
        base_url=server.rstrip("/"),
        headers={"Authorization": f"Bearer {token}"},
        verify=ssl.create_default_context(cafile=str(cacert)) if cacert else True,
        timeout=30,
    )


def _answer(response: httpx.Response, after: str = "") -> httpx.Response:
    if response.is_success:
        return response
    try:
        error = response.json()["error"]
        message = f"the server refused: {error['message']} [{error['code']}]"
    except (ValueError, KeyError, TypeError):
        message = f"the server answered {response.status_code}: {response.text[:200]}"
    fail(message + after)


@command(witness_app, "cosign")
def cosign_cmd(
    state: StateOpt = _DEFAULT_STATE,
    request: Annotated[
        Path | None, typer.Option(help="Offline: an add-checkpoint body (old size, proof, checkpoint) from a file")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Offline: write the cosigned checkpoint here (default: stdout)")
    ] = None,
    server: Annotated[
        str | None, typer.Option(help="Online: the FabGuard server, e.g. https://fabguard.example")
    ] = None,
    cacert: Annotated[Path | None, typer.Option(help="Online: the CA certificate the server's TLS chains to")] = None,
) -> None:
    """Check the newest checkpoint against the last one cosigned (consistency proof) and cosign it; refuse any fork.

    A refusal leaves the state as it was and exits 1."""
    if (request is None) == (server is None):
        fail("give --request FILE (offline) or --server URL (online)")
    with _locked(state):
        try:
            if request is not None:
                _, _, note = _cosign(state, request.read_text(encoding="utf-8"))
                if out:
                    out.write_text(note)
                else:
                    console.out(note, end="")
                return
            assert server is not None
            old = WitnessState.from_dict(_read_state(state)["log"]).size
            with _client(server, cacert) as client:
                body = _answer(client.get("/api/v1/ledger/cosign-request", params={"old": old})).text
                size, line, _ = _cosign(state, body)
                sent = client.post("/api/v1/ledger/cosignatures", json={"size": size, "signatures": line})
                _answer(sent, f"; the witness did cosign size {size} (its state says so): run again to resend")
        except (WitnessRefusal, CheckpointError, CosignatureError) as exc:
            fail(f"{exc.message} [{exc.code}]; the witness state is unchanged", code=1)
    console.print(f"[green]cosigned[/] checkpoint of size {size} and sent it to {server}")
