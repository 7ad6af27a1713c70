"""The one exception type for input a user can fix (config, plan, path, storage URL)."""

from __future__ import annotations


class UserInputError(ValueError):
    """Bad input that the user can correct.

    The message is one line naming the problem and the fix; the CLI prints it and exits with code 2,
    with no traceback.
    """
