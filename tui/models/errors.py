"""The one error type for building or running a model."""


class ModelError(Exception):
    """A model that cannot be built or run. The message is one line for the user and never holds a key."""
