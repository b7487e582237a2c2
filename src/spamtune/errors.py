"""The one exception type the CLI turns into a one-line message and exit code 2."""


class SpamtuneError(Exception):
    """Bad input or a state the user can fix: the message is shown as is, without a traceback."""
