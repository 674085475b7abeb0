"""The one exception type that reaches the user as a single line."""


class LipstreamError(Exception):
    """Bad input or an unusable environment; the CLI prints it as one line and exits non-zero."""
