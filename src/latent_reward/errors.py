"""The one exception type that the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input from the user: missing file, unknown format, wrong option value...

    The message is one sentence that says what is wrong and, where possible, what to do.
    """
