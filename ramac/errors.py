"""The one exception type for mistakes a user can make (bad path, file, config or name),
and :func:`brief`, how every such message shows a value the user gave.

The command line catches a UserError, prints its message as one line and exits with code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import reprlib
from typing import Any


class UserError(Exception):
    """A problem the user can fix; its message names the problem in one line."""


# A few elements per level, two levels deep: formatting a value costs a bounded amount of
# work whatever its size (a YAML alias bomb expands to billions of elements when printed
# whole), and ``repr``'s text for small values.
_SHORT = reprlib.Repr()
_SHORT.maxlevel = 3
_SHORT.maxdict = _SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = 4
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 60
BRIEF_CHARS = 80


def brief(value: Any, limit: int = BRIEF_CHARS) -> str:
    """``repr(value)`` cut to about ``limit`` characters, in bounded work: how an error
    message shows a value read from a file, the environment or the command line."""
    text = " ".join(_SHORT.repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
