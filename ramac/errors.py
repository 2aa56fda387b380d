"""The one exception type for mistakes a user can make (bad path, file, config or name).

The command line catches it, prints its message as one line and exits with code 2;
anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix; its message names the problem in one line."""
