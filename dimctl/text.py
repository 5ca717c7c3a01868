"""Text from outside (file, run, layer and column names) made safe to show on a terminal or in a report.

A name may hold any character a file system or a JSON string allows. Printed raw, a newline splits
one message in two, a carriage return overwrites the line (with a forged `dimctl: error:`), and an
escape sequence retitles the terminal, clears it, or worse. So every line dimctl writes for a person
goes through ``one_line``: control characters become visible escapes and the line stays one line.
"""

import re

# C0 (tab and newline included: a message is one line), DEL, C1, the Unicode line and paragraph
# separators (some terminals and editors break lines there) and the bidirectional overrides and
# isolates (they reorder what follows, so a name could show as another: "Trojan Source").
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def one_line(text: str) -> str:
    """``text`` with every control character as a visible escape (``\\n``, ``\\r``, ``\\x1b``, ``\\u202e``)."""
    return _CONTROL.sub(_escape, text)
