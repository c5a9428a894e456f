"""Python tracebacks: which lines belong to one, and what was raised.

A traceback is `Traceback (most recent call last):`, indented frames, then the unindented
`SomeError: message` line. Chained exceptions ("During handling of the above exception ..." /
"The above exception was the direct cause ...") continue the same record, so one crash is one
event; the exception reported is the last one, the one that ended the program. Exception groups
(`  + Exception Group Traceback ...`, every line indented) are recognised too.
"""
from __future__ import annotations

import re

HEADER = "Traceback (most recent call last):"
GROUP_HEADER = "+ Exception Group Traceback (most recent call last):"
CHAIN = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
_EXCEPTION = re.compile(r"([A-Za-z_][\w.]*)(?::[ \t]?(.*))?\Z", re.S)
_GROUP_LINE = re.compile(r"\s*\| (?=\S)(.*)")


def starts(line: str) -> bool:
    """Does this line open a traceback?"""
    return line.startswith(HEADER) or (line[:1] == " " and line.lstrip().startswith(GROUP_HEADER))


class Continuation:
    """Decides line by line whether a line continues the traceback being read.

    Phases: `frames` (indented lines until the exception line), `raised` (after the exception
    line: indented lines, blank lines and a chain sentence still belong), `chain` (after the chain
    sentence, until the next header).
    """

    __slots__ = ("phase", "group")

    def __init__(self, first_line: str) -> None:
        self.group = not first_line.startswith(HEADER)
        self.phase = "frames"

    def accepts(self, line: str) -> bool:
        indented = line[:1] in (" ", "\t")
        blank = not line.strip()
        if self.phase == "frames":
            if indented or blank:
                return True
            if self.group:  # an exception group's lines are all indented; this one is not
                return False
            self.phase = "raised"  # the `SomeError: message` line
            return True
        if blank or (indented and self.phase == "raised"):
            return True
        if line.rstrip() in CHAIN:
            self.phase = "chain"
            return True
        if self.phase == "chain" and starts(line):
            self.group = not line.startswith(HEADER)
            self.phase = "frames"
            return True
        return False


def exception(lines: list[str]) -> tuple[str | None, str | None]:
    """(error.type, error.message) of the last exception in a traceback's lines, or
    (None, None) when no traceback is there."""
    start = None
    for i in range(len(lines) - 1, -1, -1):
        if starts(lines[i]):
            start = i
            break
    if start is None:
        return None, None
    group = not lines[start].startswith(HEADER)
    raised = None
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if group:
            m = _GROUP_LINE.match(line)
            if m and not m.group(1).startswith("File "):
                raised = [m.group(1)]
                break
        elif line[:1] not in (" ", "\t", "") and line.strip():
            # The message may go on over unindented lines (only joined with multiline_start)
            # until a blank line or a chain sentence.
            raised = [line]
            for more in lines[i + 1:]:
                if not more.strip() or more.rstrip() in CHAIN:
                    break
                raised.append(more)
            break
    if raised is None:
        return None, None
    text = "\n".join(raised).rstrip()
    m = _EXCEPTION.match(text)
    if m is None:
        return None, text
    return m.group(1), (m.group(2) or "")
