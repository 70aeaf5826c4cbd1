"""Errors a user can fix: the CLI prints them as one line and exits non-zero, without a traceback."""


class UserError(Exception):
    """Bad input from the user (a config, a path, a flag): the message says what and where."""
