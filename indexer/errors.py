"""The one exception type Loupe shows to people."""


class LoupeError(Exception):
    """An error with a message meant for the person running Loupe (one line, actionable)."""
