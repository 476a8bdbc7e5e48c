"""The data layer's errors and warnings (shared by the readers, the cache and `data`)."""


class FER2013Error(ValueError):
    """Bad FER2013 input; the message names the file, row or argument at fault."""


class FER2013RowError(FER2013Error):
    """A bad row or image (or a missing id or class) inside a file of an accepted form.

    Its message names the file and line (or image) and what was expected; the `fer`
    command adds the list of accepted forms only to other FER2013Errors, where the file
    itself is not one of them, since appended to a row error it would bury the row.
    """


class FER2013Warning(UserWarning):
    """A FER2013 source loaded, but something about it deserves attention."""
