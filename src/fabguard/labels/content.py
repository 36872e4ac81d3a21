"""What one unit's label says: its serial, its MAC addresses and a QR code, with an optional caption.

The QR code carries the Matter onboarding payload (``MT:...``) for a Matter product, otherwise a
field-check URL carrying the serial. Everything on a label is printable ASCII, so it prints the same
on a Zebra printer's built-in font as in the PDF's core font, and nothing is lost to an encoding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from fabguard.domain.errors import InvalidRequest
from fabguard.domain.identities import MacAddress
from fabguard.domain.values import Serial, describe_value

MAX_QR = 300  # characters: a QR of version 10 or less at level M, still legible at about 20 mm
MAX_TITLE = 40
MAX_MACS = 8
_PRINTABLE = re.compile(r"[\x20-\x7e]+")
_MANUAL_CODE = re.compile(r"[0-9]+(?:-[0-9]+)*")  # digits, grouped by single dashes or not
_URL_BASE = re.compile(r"https://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?")


def _label_invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_label")


@dataclass(frozen=True, slots=True)
class UnitLabel:
    """One unit's label. ``manual_code`` is a Matter manual pairing code printed under the QR code."""

    serial: Serial
    qr: str
    macs: tuple[MacAddress, ...] = ()
    manual_code: str | None = None
    title: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.serial, Serial):
            raise _label_invalid(f"a label's serial must be a Serial, not {describe_value(self.serial)}")
        if not isinstance(self.qr, str) or len(self.qr) > MAX_QR or not _PRINTABLE.fullmatch(self.qr):
            raise _label_invalid(
                f"a label's QR text {describe_value(self.qr)} is not 1-{MAX_QR} printable ASCII characters"
            )
        if not isinstance(self.macs, tuple) or len(self.macs) > MAX_MACS:
            raise _label_invalid(f"a label carries at most {MAX_MACS} MAC addresses")
        if not all(isinstance(m, MacAddress) for m in self.macs):
            raise _label_invalid("a label's MAC addresses must be MacAddress values")
        if self.manual_code is not None and (
            not isinstance(self.manual_code, str)
            or not _MANUAL_CODE.fullmatch(self.manual_code)
            or len(self.manual_code.replace("-", "")) not in (11, 21)
        ):
            raise _label_invalid(f"manual pairing code {describe_value(self.manual_code)} is not 11 or 21 digits")
        if self.title is not None and (
            not isinstance(self.title, str) or len(self.title) > MAX_TITLE or not _PRINTABLE.fullmatch(self.title)
        ):
            raise _label_invalid(
                f"a label's title {describe_value(self.title)} is not 1-{MAX_TITLE} printable ASCII characters"
            )

    def lines(self) -> list[str]:
        """The text beside the QR code, top to bottom."""
        out = [self.title] if self.title else []
        out.append(f"S/N {self.serial}")
        out += [f"MAC {mac}" for mac in self.macs]
        if self.manual_code:
            out.append(f"Code {self.manual_code}")
        return out


def field_check_url(base: str, serial: Serial) -> str:
    """``base`` (an https URL without query or fragment) with ``?serial=<serial>``: a scanner opens the
    OEM's field-check page for this unit. A serial's characters need no escaping in a query."""
    if not isinstance(base, str) or not _URL_BASE.fullmatch(base):
        raise _label_invalid(
            f"field-check URL {describe_value(base)} is not an https URL without query or fragment "
            "(https://check.example.com/unit)"
        )
    url = f"{base}?serial={quote(str(serial), safe='-.:')}"
    if len(url) > MAX_QR:
        raise _label_invalid(f"the field-check URL for {serial} is over {MAX_QR} characters")
    return url
