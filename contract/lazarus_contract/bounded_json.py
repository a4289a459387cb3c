"""JSON from bytes someone else wrote (manifests, the fence log, quarantine markers, the
trainer's raw-tensor headers, adapter state): bounded in size and nesting depth, so that a
hostile or broken document is a `MalformedJSON` with a one-line reason, never a
`RecursionError`, an out-of-memory or a traceback in the operator, the trainer or the CLI.

Python's `json` has no depth limit of its own: nesting deeper than the interpreter's
recursion limit raises `RecursionError` from the parser, and a document just under it
still recurses in every reader after it (schema validation, decoders). The depth is
therefore measured before parsing, in linear time (`check_depth`). `NaN` and `Infinity`
(which `json` accepts, though JSON has no such values) are refused too.
"""

from __future__ import annotations

import array
import itertools
import json
import re
from typing import Any

DEFAULT_MAX_DEPTH = 64

# The characters that decide nesting: quotes open and close strings, brackets nest.
_NOT_STRUCTURAL = bytes(b for b in range(256) if b not in b'"[]{}')
# A string (escapes already gone), or an unterminated one to the end of the text.
_STRING = re.compile(rb'"[^"]*"?')
_SIGNED = bytes(1 if c in b"[{" else 255 if c in b"]}" else 0 for c in range(256))


class MalformedJSON(ValueError):
    """Not JSON, or JSON beyond the reader's bounds; the message is one line."""


def check_depth(raw: bytes, max_depth: int) -> None:
    """MalformedJSON if `raw` nests deeper than `max_depth`. Linear, C speed, whatever the
    input (at most ~1 s for 16 MiB of hostile text): escapes go, then everything but quotes
    and brackets, then the strings; the depth is the running sum of what is left."""
    s = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURAL)
    # Removing two adjacent quotes keeps every bracket inside or outside its string.
    s = _STRING.sub(b"", s.replace(b'""', b""))
    if len(s) <= max_depth:
        return
    # Past an unbalanced closer the parser stops, so the running sum bounds its recursion.
    if max(itertools.accumulate(array.array("b", s.translate(_SIGNED)))) > max_depth:
        raise MalformedJSON(f"nested deeper than {max_depth} levels")


def _no_constant(name: str) -> Any:
    raise MalformedJSON(f"{name} is not a JSON value")


def loads_bounded(
    raw: bytes | bytearray | memoryview | str,
    *,
    max_bytes: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
    allow_nan: bool = False,
) -> Any:
    """The JSON value in `raw` (UTF-8), or MalformedJSON naming why not: over `max_bytes`,
    deeper than `max_depth`, not UTF-8, not JSON, NaN/Infinity (unless `allow_nan`: a
    manifest's metrics may be NaN), or an integer too long for Python to read
    (sys.get_int_max_str_digits)."""
    data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    if len(data) > max_bytes:
        raise MalformedJSON(f"{len(data)} bytes, over the {max_bytes} a reader accepts")
    check_depth(data, max_depth)
    try:
        text = data.decode("utf-8")
        return json.loads(text) if allow_nan else json.loads(text, parse_constant=_no_constant)
    except MalformedJSON:
        raise
    except UnicodeDecodeError as exc:
        raise MalformedJSON(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, too-long integers
        raise MalformedJSON(one_line(str(exc))) from None


def one_line(text: str, limit: int = 200) -> str:
    """`text` on one line, at most `limit` characters: for reasons built from foreign data."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
