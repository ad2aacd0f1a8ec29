"""The one error a researcher sees when a dataset file cannot be used.

It has a module of its own so that generation and loading can both raise it without importing each other.
"""


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or does not match its environment; the message names the file."""
