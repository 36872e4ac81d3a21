"""XML read safely: no DTD (so no entity expansion, internal or external, and nothing fetched), with
limits on size, nesting depth and element count checked while parsing, and the line of every element
kept so that a refusal can name it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from fabguard.domain.testformats.common import FormatInvalid, FormatLimits, RecordTooLarge


class _Builder(ET.TreeBuilder):
    """A tree builder that counts depth and elements as they open, and notes each element's line."""

    def __init__(self, limits: FormatLimits) -> None:
        super().__init__()
        self.limits = limits
        self.depth = 0
        self.count = 0
        self.lines: dict[int, int] = {}
        self.parser: Any = None  # the expat parser, for its current line

    def start(self, tag: Any, attrs: Any) -> ET.Element:
        self.depth += 1
        self.count += 1
        line = self.parser.CurrentLineNumber if self.parser is not None else 0
        if self.depth > self.limits.max_depth:
            raise RecordTooLarge(f"line {line}: XML nested deeper than {self.limits.max_depth} elements")
        if self.count > self.limits.max_elements:
            raise RecordTooLarge(f"line {line}: more than {self.limits.max_elements} XML elements")
        element = super().start(tag, attrs)
        self.lines[id(element)] = line
        return element

    def end(self, tag: Any) -> ET.Element:
        self.depth -= 1
        return super().end(tag)


@dataclass(frozen=True)
class Document:
    root: ET.Element
    lines: dict[int, int]  # id(element) -> line; the elements are kept alive by root

    def at(self, element: ET.Element) -> str:
        """Where an element is, for a message: ``line 12 <Test name='Vcc'>``."""
        name = element.get("name") or element.get("Name")
        shown = f" name={name[:60]!r}" if name else ""
        return f"line {self.lines.get(id(element), '?')} <{local(element.tag)}{shown}>"


def local(tag: str) -> str:
    """An element's name without its namespace."""
    return tag.rpartition("}")[2]


def namespace(tag: str) -> str:
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


def parse_xml(data: bytes, limits: FormatLimits) -> Document:
    """Parse XML bytes (their own declaration gives the encoding) or refuse with the line at fault."""
    if len(data) > limits.max_bytes:
        raise RecordTooLarge(f"a test record file may be at most {limits.max_bytes} bytes")
    builder = _Builder(limits)
    parser = DefusedXMLParser(target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    builder.parser = parser.parser
    try:
        parser.feed(data)
        root = parser.close()
    except ET.ParseError as exc:
        line, column = exc.position
        reason = str(exc).partition(":")[0]
        raise FormatInvalid(f"line {line}, column {column}: not well-formed XML ({reason})") from None
    except DefusedXmlException:
        line = parser.parser.CurrentLineNumber
        raise FormatInvalid(f"line {line}: a DTD or entity declaration is not accepted") from None
    except (ValueError, LookupError) as exc:  # an encoding Python does not know, a bad character
        raise FormatInvalid(f"the XML cannot be decoded ({type(exc).__name__})") from None
    return Document(root, builder.lines)
