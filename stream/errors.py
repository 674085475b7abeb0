"""The one exception type that reaches the user as a single line."""


class LipstreamError(Exception):
    """Bad input or an unusable environment; the CLI prints it as one line and exits non-zero."""


def one_line(e: BaseException, limit: int = 240) -> str:
    """An exception as one short line for a message: its first line, else its type's name."""
    text = str(e).strip()
    first = text.splitlines()[0].strip() if text else type(e).__name__
    return first if len(first) <= limit else first[: limit - 3] + "..."
