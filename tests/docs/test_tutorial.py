"""docs/tutorial.md stays true: every command of its console blocks is run, in order, in one shell on a fresh
instance (a temporary HOME), and what each prints matches what the page shows once the values that differ on
every run (tokens, times, keys, serial numbers, the home's path) are masked. `fabguard serve` runs in the
background, on free ports instead of 8443 and 8080, as the page's second terminal."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
PAGE_HOME = "/home/alex"
# The order's end as the page shows it, and as the test sets it so the page's commands still work after it.
PAGE_VALID_UNTIL, RUN_VALID_UNTIL = "2027-03-31", "2099-12-31"


@dataclass
class Step:
    command: str
    shown: list[str] = field(default_factory=list)


def steps() -> list[Step]:
    """The commands of the page's ```console blocks, each with the lines the page shows it printing."""
    found: list[Step] = []
    in_block, heredoc = False, ""
    for line in TUTORIAL.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_block = line == "```console"
            continue
        if not in_block:
            continue
        if heredoc:
            found[-1].command += "\n" + line
            heredoc = "" if line == heredoc else heredoc
        elif line.startswith("$ "):
            found.append(Step(line[2:]))
            match = re.search(r"<<'(\w+)'", line)
            heredoc = match.group(1) if match else ""
        elif found and found[-1].command.endswith("\\"):
            found[-1].command = found[-1].command[:-1].rstrip() + " " + line.strip()
        elif found:
            found[-1].shown.append(line)
    return found


MASKS = [
    (re.compile(r"fg[te]_[A-Za-z0-9_-]+"), "TOKEN"),
    (re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+(?:\+00:00|Z)?"), "TIME"),
    (re.compile(r"(notBefore|notAfter)=.*"), r"\1=DATE"),
    (re.compile(r"\b[0-9a-f]{30,40}\b"), "HEX"),  # a random certificate serial: leading zeros are not printed
    (re.compile(r"[A-Za-z0-9+/]{40,}={0,2}"), "B64"),
    (re.compile(r"database: \d+; code: \d+"), "database: REV; code: REV"),  # the newest migration
    (re.compile(r"local:\w+"), "local:USER"),  # the CLI's actor names the operating-system user
    (re.compile(r"[─━═]+"), "-"),
    (re.compile(r"\s+"), " "),
]


def masked(lines: list[str], home: str) -> list[str]:
    out = []
    for line in lines:
        line = line.replace(home, PAGE_HOME)
        for pattern, replacement in MASKS:
            line = pattern.sub(replacement, line)
        out.append(line.strip())
    return [line for line in out if line]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.slow
def test_every_command_of_the_tutorial_prints_what_the_page_shows(tmp_path: Path) -> None:
    if shutil.which("openssl") is None or shutil.which("curl") is None:
        pytest.skip("the tutorial needs openssl and curl")
    commands = steps()
    assert len(commands) > 15
    home = tmp_path / "home"
    home.mkdir()
    port, http_port = free_port(), free_port()
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "fabguard").exists() and (bin_dir / "fabguard-station").exists()
    script = ["set -u", f"cd {shlex.quote(str(home))}", 'trap "kill %1 2>/dev/null; wait" EXIT']
    for i, step in enumerate(commands):
        command = step.command.replace(PAGE_VALID_UNTIL, RUN_VALID_UNTIL)
        command = command.replace("localhost:8443", f"localhost:{port}")
        command = re.sub(
            r"FABGUARD_ENROLLMENT_TOKEN=fge_\S+", 'FABGUARD_ENROLLMENT_TOKEN="$(cat "$HOME/.token")"', command
        )
        script.append(f"echo '@@@ {i}'")
        if command.startswith("fabguard serve"):
            # The page's second terminal: in the background, until it answers.
            script.append(f'fabguard serve --port {port} --http-port {http_port} > "$HOME/.serve.log" 2>&1 &')
            script.append(
                f"for _ in $(seq 300); do curl -s --cacert ~/fabguard-instance/ca/root.pem "
                f"https://localhost:{port}/livez >/dev/null && break; sleep 0.1; done"
            )
            continue
        script.append(f"{command}\n")
        script.append("echo")  # the next marker on a line of its own (curl's answer ends without a newline)
    text = "\n".join(script)
    # The token is read from what `fixture add` printed: capture that command's output to a file as well.
    text = text.replace(
        "fabguard fixture add fx-sz-01 --site cm-shenzhen\n",
        'fabguard fixture add fx-sz-01 --site cm-shenzhen | tee "$HOME/.fixture"\n'
        'grep -o "fge_[A-Za-z0-9_-]*" "$HOME/.fixture" > "$HOME/.token"\n',
    )
    env = {
        "HOME": str(home),
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "COLUMNS": "200",
    }
    if os.environ.get("PYTHONPATH"):  # the code under test, where it is not the installed one
        env["PYTHONPATH"] = os.pathsep.join(str(Path(e).resolve()) for e in os.environ["PYTHONPATH"].split(os.pathsep))
    ran = subprocess.run(
        ["bash", "-c", text], env=env, capture_output=True, text=True, timeout=600, check=False, cwd=home
    )
    outputs: dict[int, list[str]] = {}
    current = -1
    for line in (ran.stdout + "\n").splitlines():
        marker = re.fullmatch(r"@@@ (\d+)", line)
        if marker:
            current = int(marker.group(1))
            outputs[current] = []
        elif current >= 0:
            outputs[current].append(line)
    assert sorted(outputs) == list(range(len(commands))), ran.stderr[-3000:]
    for i, step in enumerate(commands):
        if step.command.startswith("fabguard serve"):
            continue
        # stderr is not split by command: what a command writes there (openssl's "-----") is looked for as a whole.
        shown = [line for line in masked(step.shown, str(home)) if line != "-----"]
        got = masked(outputs[i], str(home))
        assert got == shown, (
            f"{step.command}\n--- the page shows:\n" + "\n".join(shown) + "\n--- it printed:\n" + "\n".join(got)
        )
