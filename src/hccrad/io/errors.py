"""The base of every error a user can fix from its message alone (bad input, unwritable output, altered model).

The command line prints such an error as one line and exits with status 2, instead of a traceback.
"""

from __future__ import annotations


class InputError(Exception):
    """An error whose message names the file or field at fault and what was expected."""
