"""Exception types shared by every layer of nerfcompress."""


class BitstreamError(ValueError):
    """A compressed file or section cannot be decoded.

    Covers every corrupt, truncated, foreign or wrong-version file: bad magic, unsupported
    format version, CRC mismatch, lengths that exceed the bytes that remain, and damage that
    the entropy decoder notices (constriction's ``AssertionError``/``KeyError``/``ValueError``
    are re-raised as this type). The message says what was expected, what was found, and
    what a person can do about it (usually: re-export the file or check the download).
    """


class ExportError(ValueError):
    """A trained run cannot be exported: its config or checkpoint is missing, or its method
    (or one of its table kinds) has no codec. The message names what can be exported."""
