"""The one error devstack raises: a local service could not be provided."""


class StackError(RuntimeError):
    """Raised with a one-line message that tells a person what to do."""
