"""File names made from outside identifiers: a serial never steers where a file is written."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabguard.domain.errors import FabGuardError
from fabguard.domain.filenames import path_inside, safe_file_name

PLAIN = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


@pytest.mark.parametrize("value", ["SN0000042", "D123456-0001", "fw_3f9a", "issuing-2027", "a.b"])
def test_a_plain_identifier_is_its_own_file_name(value: str) -> None:
    assert safe_file_name(value) == value


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("A/../../x", "A%2F..%2F..%2Fx"),
        ("SN/77", "SN%2F77"),
        ("..", "%2E."),
        (".", "%2E"),
        (".hidden", "%2Ehidden"),
        ("a\\b", "a%5Cb"),
        ("ACME:SN1", "ACME%3ASN1"),
        ("a%2Fb", "a%252Fb"),  # not the name of "a/b"
        ("SN\x001", "SN%001"),
        ("SN\n1", "SN%0A1"),
        ("SN\u00e9", "SN%C3%A9"),
    ],
)
def test_anything_else_is_percent_encoded(value: str, name: str) -> None:
    assert safe_file_name(value) == name


@given(st.text(min_size=1, max_size=64))
def test_every_name_is_one_plain_component_that_decodes_to_its_identifier(value: str) -> None:
    name = safe_file_name(value)
    assert name and not name.startswith(".")
    assert set(name) <= PLAIN | {"%"}
    assert unquote(name, errors="strict") == value  # so two identifiers never share a name


def test_an_empty_identifier_has_no_file_name() -> None:
    with pytest.raises(FabGuardError):
        safe_file_name("")


def test_a_name_inside_the_folder_is_returned_resolved(tmp_path: Path) -> None:
    assert path_inside(tmp_path, "certs/SN1.pem") == tmp_path.resolve() / "certs" / "SN1.pem"


@pytest.mark.parametrize("name", ["../x", "certs/../../x", "/etc/passwd", ".", ""])
def test_a_name_that_leaves_the_folder_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(FabGuardError) as info:
        path_inside(tmp_path / "out", name)
    assert info.value.code == "output_path_unsafe"


def test_a_link_in_the_folder_that_leads_out_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "out" / "certs")
    os.symlink(tmp_path / "elsewhere" / "victim", tmp_path / "out" / "ca.pem")
    for name in ("certs/SN1.pem", "ca.pem"):
        with pytest.raises(FabGuardError) as info:
            path_inside(tmp_path / "out", name)
        assert info.value.code == "output_path_unsafe" and name in info.value.message
