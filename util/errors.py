"""The project's error type: raised with a one-line message, caught once at each entry point."""


class SargenError(Exception):
    """A user-facing error whose message names the file or option at fault and what to do."""
