"""The one error type for bad input a user gave."""


class InputError(ValueError):
    """Bad input a user gave: the message is one sentence naming the problem and the fix."""


class InputTypeError(InputError, TypeError):
    """Bad input of the wrong kind (e.g. objects where numbers belong): also a TypeError."""
