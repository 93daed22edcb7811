"""User-facing errors.

Anything a user can cause (a bad file, a wrong option, a checkpoint that is not what it claims) raises
`OpenJukeboxError` with a one-line message that names the thing and the problem. The CLI prints that line
and exits with status 1; it never shows a traceback for these.
"""


class OpenJukeboxError(Exception):
    """An error caused by input; its message is shown to the user as is."""
