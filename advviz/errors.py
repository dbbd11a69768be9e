"""User-facing errors.

Anything a user can cause (bad flag, missing file, malformed data) raises :class:`AdvvizError`;
the CLI turns it into one line on stderr and a non-zero exit code. Programming errors stay
ordinary exceptions so that they keep their tracebacks.
"""

from __future__ import annotations

import unicodedata

# Characters that would break a message's single line or rewrite what the terminal shows: control
# characters (newline, carriage return, ESC, ...), format characters (bidi overrides, zero-width
# marks) and the Unicode line and paragraph separators.
_UNPRINTABLE = ("Cc", "Cf", "Zl", "Zp")


def one_line(text: str) -> str:
    """``text`` with every character that is not plainly printable written as its escape, as
    ``repr`` does (a newline in a path becomes ``\\n``, ESC ``\\x1b``, U+2028 ``\\u2028``); other
    characters, backslashes included, are kept, so the result is unchanged by a second call."""
    return "".join(ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in _UNPRINTABLE else ch
                   for ch in text)


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of another library's exception message (some run over several lines of
    advice), at most ``limit`` characters: what a one-line error quotes of it."""
    lines = str(e).strip().splitlines()
    line = lines[0] if lines else type(e).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


class AdvvizError(Exception):
    """An error caused by user input. Its message is one line whatever it quotes: file names,
    tensor names or data read from user files have their line breaks and control characters
    escaped (:func:`one_line`), so the CLI, the app and a library caller each see one line."""

    exit_code = 2

    def __init__(self, message: object = "", *args):
        super().__init__(one_line(str(message)), *args)
