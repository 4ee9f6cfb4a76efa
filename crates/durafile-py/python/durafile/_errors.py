"""durafile's exceptions.

Every failure is a :class:`durafile.Error`, an :class:`OSError` that says which step failed
(``.step``), on which path (``.path``, also ``.filename``), with the OS error (``.errno``,
``.strerror``), what to do about it (``.hint``) and whether the target is exactly as it was
(``.target_untouched``). ``str(e)`` is the library's one-line message, the same the
``durafile`` command prints.

An OS error is raised as a class that inherits from both :class:`durafile.Error` and the
built-in class for its errno, so ``except FileNotFoundError`` and ``except PermissionError``
keep working: a missing file raises ``durafile.FileNotFoundError``, which is both.
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Any, Dict, Optional, Tuple, Type

__all__ = [
    "Error",
    "LockTimeout",
    "ChecksumError",
    "ChecksumMismatch",
    "InvalidKey",
    "MigrationError",
]


class Error(OSError):
    """A durafile operation failed.

    Attributes:
        step: the step that failed: ``"resolve"``, ``"inspect"``, ``"lock"``,
            ``"create_temp"``, ``"write"``, ``"set_permissions"``, ``"sync"``, ``"rename"``,
            ``"sync_dir"``, ``"read"``, ``"read_dir"``, ``"create_dir"``, ``"remove"``,
            ``"checksum_begin"``, ``"checksum_finish"`` or ``"verify"`` (None when the error
            happened at no step).
        path: the file the operation was about (the target, never its temp file).
        hint: what to do about it, or None.
        target_untouched: True when the target is byte-for-byte as it was before the call
            (False only after a failure that came after the rename, a directory fsync).
        kind: which kind of failure, e.g. ``"io"``, ``"lock_timeout"``,
            ``"checksum_mismatch"``, ``"invalid_key"``.
        message: the full one-line message, also ``str(e)``.
    """

    step: Optional[str]
    path: str
    hint: Optional[str]
    target_untouched: bool
    kind: str
    message: str

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Tuple[Any, ...]:
        # Exceptions cross process boundaries (multiprocessing, concurrent.futures) pickled.
        # By kind and errno, not by class: the classes mixed with a builtin are made at run
        # time and cannot be looked up by name.
        return (_rebuild, (getattr(self, "kind", None), self.errno, self.args, self.__dict__))


def _rebuild(
    kind: Optional[str], code: Optional[int], args: Tuple[Any, ...], state: Dict[str, Any]
) -> Error:
    cls = _BY_KIND.get(kind or "") or _class_for_errno(code)
    exc = cls(*args)
    exc.__dict__.update(state)
    return exc


class LockTimeout(Error, TimeoutError):
    """The file's lock was still held elsewhere when the timeout ran out.

    Attributes:
        lock_file: the sidecar lock file that is held (``fuser`` it to find the holder).
        waited: how long durafile waited, in seconds.
    """

    lock_file: str
    waited: float


class ChecksumError(Error):
    """A file could not be verified against its checksum sidecar (``NAME.sha256``): the
    sidecar is missing while checksums are required, or malformed. ChecksumMismatch, the case
    of corrupt content, is a subclass."""


class ChecksumMismatch(ChecksumError):
    """The content matches none of the digests its sidecar lists: it was changed outside
    durafile, or the disk corrupted it. The content is never returned.

    Attributes:
        expected: the digests the sidecar lists, in hex.
        actual: the digest of the content found, in hex.
    """

    expected: list
    actual: str


class InvalidKey(Error, ValueError):
    """A DataHandler key or state name that could escape the directory, hide, or collide with
    durafile's own files. Nothing was read or written.

    Attributes:
        key: the key as given.
        reason: why it is refused.
    """

    key: str
    reason: str


class MigrationError(Error):
    """A migration could not migrate a document (a step returned something that is not an
    object, a version field is not a whole number, a step is missing). In a directory
    migration no document changed.

    Attributes:
        reason: what went wrong.
    """

    reason: str


_BY_KIND: Dict[str, Type[Error]] = {
    "lock_timeout": LockTimeout,
    "checksum_mismatch": ChecksumMismatch,
    "missing_checksum": ChecksumError,
    "bad_checksum_file": ChecksumError,
    "invalid_key": InvalidKey,
    "migration": MigrationError,
}

# errno for failures that are not an OS call's but have a fitting code.
_ERRNO_OF_KIND = {
    "lock_timeout": _errno.ETIMEDOUT,
    "already_locked": _errno.EDEADLK,
    "no_file_name": _errno.EINVAL,
}


_WITH_BUILTIN: Dict[Type[OSError], Type[Error]] = {}


def _class_for_errno(code: Optional[int]) -> Type[Error]:
    """durafile.Error, mixed with the built-in OSError subclass for ``code`` if there is one
    (``OSError(ENOENT, ...)`` is a FileNotFoundError, and so on)."""
    if code is None:
        return Error
    builtin = type(OSError(code, ""))
    if builtin is OSError:
        return Error
    cls = _WITH_BUILTIN.get(builtin)
    if cls is None:
        cls = type(
            builtin.__name__,
            (Error, builtin),
            {
                "__module__": "durafile",
                "__doc__": f"durafile.Error that is also a {builtin.__name__}.",
            },
        )
        _WITH_BUILTIN[builtin] = cls
    return cls


def from_native(
    kind: str,
    message: str,
    step: Optional[str],
    path: str,
    os_errno: Optional[int],
    target_untouched: bool,
    hint: Optional[str],
    extra: Dict[str, Any],
) -> Error:
    """Builds the exception for an error of the native module (called from Rust)."""
    code = os_errno if os_errno is not None else _ERRNO_OF_KIND.get(kind)
    cls = _BY_KIND.get(kind) or _class_for_errno(code)
    strerror = os.strerror(code) if code is not None else message
    exc = cls(code, strerror, path)
    exc.kind = kind
    exc.message = message
    exc.step = step
    exc.path = path
    exc.hint = hint
    exc.target_untouched = target_untouched
    for name, value in extra.items():
        setattr(exc, name, value)
    return exc


for _cls in (Error, LockTimeout, ChecksumError, ChecksumMismatch, InvalidKey, MigrationError):
    _cls.__module__ = "durafile"
