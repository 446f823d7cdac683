"""certdrop: a drop-folder certificate daemon."""

__version__ = "0.1.0"
