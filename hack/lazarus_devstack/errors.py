"""The one error the devstack raises: a message that says what is wrong and what to do."""


class DevstackError(Exception):
    """Starting or stopping the stack failed; str(err) is meant for a person."""
