"""Terminal escape codes taken off text codexd quotes from a log (codex colours its
lines even into a file), so a quoted line never recolours codexd's own output."""

from __future__ import annotations

import re

# codex colours its log lines (`ESC[2m` ... `ESC[0m`) even into a file. Taken off:
# CSI sequences (ESC [ parameters, intermediates, a final byte), OSC strings (ESC ]
# up to BEL, ESC \ or the end of the line), the other escapes (ESC, intermediates, a
# final byte: ESC c, ESC 7, ESC ( B), and any ESC or other control character left,
# so that no quoted line can recolour codexd's output.
_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\|$)"  # OSC
    r"|\x1b[ -/]*[0-~]"  # the other escapes
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"  # a stray ESC, other C0 and C1 controls
)


def strip_escapes(line: str) -> str:
    """`line` as a person reads it on a terminal, with no escape or control codes."""
    return _ESCAPE.sub("", line)
