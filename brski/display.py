"""Text from peers, made safe to show on a terminal.

A serial-number, a certificate subject or an error detail can carry bytes a
peer chose. Printed raw, ``ESC[2J`` clears the operator's screen and a bidi
override reorders what they read; every CLI prints such text through
:func:`escape_controls`. (RFC 7950 section 9.4 already keeps C0 controls out
of YANG strings; names in certificates and free-form details are not YANG.)
"""

from __future__ import annotations

import unicodedata

__all__ = ["escape_controls"]

# Unicode TR #9 bidi embeddings, overrides, isolates and marks, and the line
# and paragraph separators: format characters that move or break what is shown.
_FORMAT = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
)


def escape_controls(text: str) -> str:
    """``text`` with control characters (C0, DEL, C1) and the format characters
    above written as ``\\xNN`` / ``\\uNNNN``; everything else unchanged."""
    if text.isprintable():
        return text  # the common case, decided in C
    out = []
    for ch in text:
        if unicodedata.category(ch) == "Cc" or ch in _FORMAT:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)
