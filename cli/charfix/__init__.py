"""charfix: find and repair character portraits that never reached the library."""

__version__ = "0.1.0"
