"""``fabguard royalty``: set and list rates, write a statement that ``fabguard audit verify-report`` accepts."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_cli import fg, home  # noqa: F401  (the fixture)


def test_rate_set_list_and_a_statement_that_verifies_offline(home: Path, tmp_path: Path) -> None:  # noqa: F811
    assert fg(home, "product", "add", "sensor", "--name", "Sensor")[0] == 0
    code, out = fg(home, "royalty", "rate", "set", "--product", "sensor", "--amount", "0.42", "--currency", "EUR")
    assert code == 0 and "0.42 EUR per unit" in out, out
    code, out = fg(home, "royalty", "rate", "list")
    assert code == 0 and "0.42 EUR" in out
    code, out = fg(home, "royalty", "statement", "--product", "sensor", "--out", str(tmp_path / "st"))
    assert code == 0 and "Due: nothing" in out, out
    assert {p.name for p in (tmp_path / "st").iterdir()} == {
        "statement.json",
        "statement.csv",
        "statement.pdf",
        "statement.pdf.sig",
        "statement.csv.sig",
    }
    code, key = fg(home, "ledger", "key")
    (tmp_path / "key.pub").write_text(key)
    for name in ("statement.json", "statement.pdf", "statement.csv"):
        code, out = fg(home, "audit", "verify-report", str(tmp_path / "st" / name), "--key", str(tmp_path / "key.pub"))
        assert code == 0 and "verified" in out, out


def test_the_statement_csv_is_signed_and_a_changed_byte_fails(home: Path, tmp_path: Path) -> None:  # noqa: F811
    """Each of the three files is signed by the ledger key: the CSV (what a finance tool imports) too."""
    fg(home, "product", "add", "sensor", "--name", "Sensor")
    fg(home, "royalty", "rate", "set", "--product", "sensor", "--amount", "0.42", "--currency", "EUR")
    assert fg(home, "royalty", "statement", "--product", "sensor", "--out", str(tmp_path / "st"))[0] == 0
    _, key = fg(home, "ledger", "key")
    (tmp_path / "key.pub").write_text(key)
    csv_path = tmp_path / "st" / "statement.csv"
    code, out = fg(home, "audit", "verify-report", str(csv_path), "--key", str(tmp_path / "key.pub"))
    assert code == 0 and "verified" in out, out
    data = bytearray(csv_path.read_bytes())
    data[-3] ^= 0x01  # one bit of one byte near the end (a figure or a ledger index)
    csv_path.write_bytes(bytes(data))
    code, out = fg(home, "audit", "verify-report", str(csv_path), "--key", str(tmp_path / "key.pub"))
    assert code == 1 and "FAILED" in out and "statement.csv" in out, out


def test_bad_rates_are_one_line_errors(home: Path) -> None:  # noqa: F811
    fg(home, "product", "add", "sensor", "--name", "Sensor")
    for args, expected in (
        (["--product", "sensor", "--amount", "0.1e1", "--currency", "EUR"], "decimal text"),
        (["--product", "sensor", "--amount", "1", "--currency", "euro"], "ISO 4217"),
        (["--amount", "1", "--currency", "EUR"], "either --product or --order"),
        (
            ["--product", "sensor", "--amount", "1", "--currency", "EUR", "--from", "2020-01-01T00:00:00+00:00"],
            "now or later",
        ),
    ):
        code, out = fg(home, "royalty", "rate", "set", *args)
        lines = [ln for ln in out.splitlines() if ln.strip()]
        assert code in (2, 3) and expected in out and len(lines) == 1, out
