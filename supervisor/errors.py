"""The one exception a command turns into a message on stderr and a non-zero exit."""


class DaemonError(Exception):
    """A failure the user must see; the message names the file, path or process."""
