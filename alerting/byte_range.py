"""The one byte range a client asks for in a ``Range`` header (RFC 9110, section 14).

Only a single range is served: a multi-range or malformed header is ignored (the whole
representation is sent), which the RFC allows; it spares multipart/byteranges, which no
audio player needs.

>>> requested_range("bytes=0-99", 1000)
ByteRange(first=0, last=99)
>>> requested_range("bytes=900-", 1000).content_range(1000)
'bytes 900-999/1000'
>>> requested_range("bytes=-100", 1000)
ByteRange(first=900, last=999)
>>> requested_range("bytes=0-9999", 1000)
ByteRange(first=0, last=999)
>>> requested_range("bytes=-5000", 1000)
ByteRange(first=0, last=999)
>>> requested_range("bytes=0-1,5-9", 1000) is None
True
>>> requested_range("bytes=9-5", 1000) is None
True
>>> requested_range("items=0-9", 1000) is None
True
>>> requested_range("bytes=1000-", 1000)
Traceback (most recent call last):
...
alerting.byte_range.Unsatisfiable: bytes=1000-
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ByteRange", "Unsatisfiable", "requested_range"]

# range-unit is case-insensitive; OWS is allowed around "=" by common practice, not digits.
_SINGLE = re.compile(r"\s*bytes\s*=\s*(\d*)-(\d*)\s*", re.IGNORECASE | re.ASCII)


class Unsatisfiable(ValueError):
    """A well-formed range that selects no byte of the representation (answer 416)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ByteRange:
    first: int
    last: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, total: int) -> str:
        return f"bytes {self.first}-{self.last}/{total}"


def requested_range(header: str, total: int) -> ByteRange | None:
    """The bytes of a ``total``-byte representation that ``header`` asks for; None when the
    header is to be ignored (malformed or several ranges). Raises Unsatisfiable."""
    matched = _SINGLE.fullmatch(header)
    if matched is None:
        return None
    first, last = matched.group(1), matched.group(2)
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0:
            raise Unsatisfiable(header)
        return ByteRange(first=max(total - suffix, 0), last=total - 1)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= total:
        raise Unsatisfiable(header)
    end = total - 1 if not last else min(int(last), total - 1)
    return ByteRange(first=start, last=end)
