"""What a feature licence may say: its feature names and its expiry (checked before anything is signed)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from fabguard.domain.errors import InvalidRequest

MAX_FEATURES = 64
_FEATURE_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


def licence_features(features: Sequence[object]) -> tuple[str, ...]:
    """1-64 feature names, each 1-63 lower-case letters, digits, '.', '_' or '-'; sorted, without repeats."""
    if not features or len(features) > MAX_FEATURES:
        raise InvalidRequest(f"a licence names 1-{MAX_FEATURES} features, not {len(features)}", code="invalid_feature")
    for f in features:
        if not isinstance(f, str) or not _FEATURE_RE.fullmatch(f):
            raise InvalidRequest(
                f"feature {f!r} is not 1-63 lower-case letters, digits, '.', '_' or '-'", code="invalid_feature"
            )
    return tuple(sorted({str(f) for f in features}))


def licence_expiry(not_after: datetime | None, now: datetime) -> datetime | None:
    """No expiry, or a time with a zone after now."""
    if not_after is None:
        return None
    if not_after.tzinfo is None:
        raise InvalidRequest("a licence's expiry needs a time zone", code="licence_expiry_invalid")
    if not_after <= now:
        raise InvalidRequest(
            f"a licence's expiry must be in the future, not {not_after.isoformat()}", code="licence_expiry_invalid"
        )
    return not_after
