"""The manifest is read a member at a time, accepting and refusing exactly what json.loads does."""

from __future__ import annotations

import io
import json

import pytest

from fabguard.ledger.json_stream import NotAnObject, read_object


def _read(text: str, chunk: int) -> tuple[dict[str, object], dict[str, object] | None]:
    """What read_object makes of ``text``, as json.loads would see it: the other members, and ``big``."""
    big: dict[str, object] = {}
    others, streamed = read_object(io.StringIO(text), "big", big.__setitem__, big.clear, chunk=chunk)
    return others, (big if streamed else None)


DOCUMENTS = [
    '{"a": 1, "big": {"x": {"serial": "S1", "order_id": "po"}, "y": [1, 2.5e3, null]}, "z": "end"}',
    '  {"big": {}, "n": 123456789012345678901234567890}  \n',
    '{"big": {"k": 1, "k": 2}, "a": true}',  # a name twice in the streamed member: the last counts
    '{"big": {"k": 1}, "big": {"m": 2}}',  # the streamed member twice: the last counts
    '{"big": {"k": 1}, "big": [1]}',  # the last one is not an object: kept as a value
    '{"big": "text"}',
    "{}",
    '{"s": "a \\" quote, a \\\\ and \\u00e9", "big": {"\\u0063erts/x.pem": {}}}',
    '{"big": {"a": -0.5, "b": NaN, "c": Infinity, "d": -Infinity, "e": false}}',
]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 16])
@pytest.mark.parametrize("text", DOCUMENTS)
def test_a_document_reads_as_json_loads_reads_it(text: str, chunk: int) -> None:
    whole = json.loads(text)
    others, big = _read(text, chunk)
    expected_big = whole.pop("big", None)
    if isinstance(expected_big, dict):
        assert big == expected_big and "big" not in others
    else:
        assert big is None and others.get("big") == expected_big
        whole.pop("big", None)
        others.pop("big", None)
    assert json.dumps(others, sort_keys=True) == json.dumps(whole, sort_keys=True)


@pytest.mark.parametrize("chunk", [1, 5, 1 << 16])
@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "{",
        '{"a": 1',
        '{"a": 1,}',
        '{"a" 1}',
        "{1: 2}",
        '{"a": 1} x',
        '{"a": 1}{}',
        '{"big": {"x": 1,}}',
        '{"big": {"x" 1}}',
        '{"big": {"x": 1}',
        '{"big": {"x": tru}}',
        '{"a": 12',
        '{"a": "unterminated}',
    ],
)
def test_what_json_loads_refuses_is_refused(text: str, chunk: int) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        _read(text, chunk)


@pytest.mark.parametrize("text", ["[1, 2]", '"text"', "12", "null", ' [{"a": 1}] '])
def test_json_that_is_not_an_object_is_told_apart(text: str) -> None:
    with pytest.raises(NotAnObject):
        _read(text, 2)
