"""The data layer's errors and warnings (shared by the readers, the cache and `data`)."""


class FER2013Error(ValueError):
    """Bad FER2013 input; the message names the file, row or argument at fault."""


class FER2013Warning(UserWarning):
    """A FER2013 source loaded, but something about it deserves attention."""
