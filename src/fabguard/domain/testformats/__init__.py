"""Test records in the formats lines write (OpenHTF JSON, TestStand ATML and XML reports, JUnit XML,
CSV), parsed into the one model, ``fabguard.domain.testrecord.TestRecord``. Pure: bytes in, values out.
"""

from fabguard.domain.testformats.common import FormatInvalid, FormatLimits, FormatUnknown, RecordTooLarge
from fabguard.domain.testformats.read import (
    FORMATS,
    detect_format,
    openhtf_json,
    parse_test_record,
    parse_test_records,
)

__all__ = [
    "FORMATS",
    "FormatInvalid",
    "FormatLimits",
    "FormatUnknown",
    "RecordTooLarge",
    "detect_format",
    "openhtf_json",
    "parse_test_record",
    "parse_test_records",
]
