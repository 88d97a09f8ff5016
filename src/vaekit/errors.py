"""The one error type for bad input a user gave."""


class InputError(ValueError):
    """Bad input a user gave: the message is one sentence naming the problem and the fix."""
