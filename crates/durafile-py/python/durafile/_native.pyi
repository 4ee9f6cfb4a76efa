"""Type stubs for durafile._native, the Rust half of the durafile package.

Every function releases the GIL while it waits for a lock or touches the disk, and takes it
back only to call Python code given to it. Use the ``durafile`` package rather than this
module; ``write``, ``read`` and ``update`` are re-exported there as they are.
"""

from os import PathLike
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union, final

_Path = Union[str, bytes, PathLike[str], PathLike[bytes]]
_Data = Union[bytes, bytearray, str]

def write(
    path: _Path,
    data: _Data,
    *,
    durability: str = "full",
    mode: Optional[int] = None,
    checksum: bool = False,
    timeout: Optional[float] = None,
) -> None:
    """Replaces the file at ``path`` with ``data`` (bytes, or str written as UTF-8),
    atomically and durably; raises durafile.Error naming the failed step."""

def read(
    path: _Path,
    *,
    checksum: Optional[bool] = None,
    lock: bool = False,
    timeout: Optional[float] = None,
) -> bytes:
    """Reads the whole file, verified against its checksum sidecar when it has one
    (``checksum=True`` requires one); ChecksumMismatch for corrupt content."""

def update(
    path: _Path,
    fn: Callable[[Optional[bytes]], _Data],
    *,
    durability: str = "full",
    mode: Optional[int] = None,
    checksum: bool = False,
    timeout: Optional[float] = None,
) -> bytes:
    """Replaces the file with ``fn(current)`` under its exclusive lock (no lost update);
    ``fn``'s exceptions propagate unchanged and leave the file untouched. Returns the new
    content."""

@final
class AtomicWriter:
    """A new version of a file, published by ``commit()``; holds the file's lock until
    ``commit()`` or ``discard()``."""

    def __init__(
        self,
        path: _Path,
        *,
        durability: str = "full",
        mode: Optional[int] = None,
        checksum: bool = False,
        timeout: Optional[float] = None,
    ) -> None: ...
    def write(self, data: Union[bytes, bytearray]) -> int: ...
    def read_current(self) -> Optional[bytes]: ...
    def commit(self) -> None: ...
    def discard(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def path(self) -> str: ...
    @property
    def temp_path(self) -> str: ...

@final
class Lock:
    """A path's durafile lock (a flock on ``dir/.NAME.lock``), as a context manager."""

    def __init__(self, path: _Path, *, shared: bool = False, timeout: Optional[float] = None) -> None: ...
    def acquire(self) -> None: ...
    def release(self) -> None: ...
    @property
    def locked(self) -> bool: ...
    @property
    def lock_file(self) -> str: ...
    def __enter__(self) -> "Lock": ...
    def __exit__(self, *args: Any) -> bool: ...

def verify(
    paths: Sequence[_Path], *, recursive: bool = False
) -> List[Tuple[str, str, Optional[str], bool, Optional[BaseException]]]:
    """``(path, status, digest, pending, error)`` per file checked."""

def recover(directory: _Path, *, dry_run: bool = False) -> Dict[str, List[Any]]:
    """Keys ``removed``, ``in_use``, ``checksums_completed``, ``missing``, ``busy`` (paths)
    and ``damaged`` (exceptions)."""

@final
class DataHandler:
    def __init__(
        self,
        directory: _Path,
        *,
        durability: str = "full",
        checksum: bool = False,
        timeout: Optional[float] = None,
    ) -> None: ...
    def path_of(self, key: str) -> str: ...
    def delete(self, key: str) -> bool: ...
    def list(self) -> List[str]: ...
    @property
    def directory(self) -> str: ...

@final
class StateManager:
    def __init__(
        self,
        directory: _Path,
        *,
        name: str = "state",
        keep: int = 3,
        durability: str = "full",
        checksum: bool = False,
        timeout: Optional[float] = None,
    ) -> None: ...
    def save(self, document: str) -> int: ...
    def load(self) -> Optional[Tuple[str, int, List[Tuple[int, BaseException]]]]: ...
    def load_generation(self, number: int) -> str: ...
    def history(self) -> List[Tuple[int, str]]: ...
    def rollback(self, number: int) -> int: ...
    @property
    def directory(self) -> str: ...

_Steps = Sequence[Tuple[int, Callable[[str], str]]]

def migrate_value(
    document: str,
    steps: _Steps,
    *,
    field: str = "schema_version",
    to: Optional[int] = None,
    path: str = "<document>",
) -> Tuple[str, int]: ...
def migrate_file(
    path: _Path,
    steps: _Steps,
    *,
    field: str = "schema_version",
    to: Optional[int] = None,
    durability: str = "full",
    checksum: bool = False,
    timeout: Optional[float] = None,
    pretty: bool = False,
) -> Tuple[int, int]: ...
def migrate_dir(
    directory: _Path,
    steps: _Steps,
    *,
    field: str = "schema_version",
    to: Optional[int] = None,
    dry_run: bool = False,
    progress: Optional[Callable[[str, int, int], Any]] = None,
    durability: str = "full",
    checksum: bool = False,
    timeout: Optional[float] = None,
    pretty: bool = False,
) -> Dict[str, Any]: ...
def recover_migration(
    directory: _Path,
    *,
    durability: str = "full",
    checksum: bool = False,
    timeout: Optional[float] = None,
) -> Optional[List[str]]: ...

@final
class CancelFlag:
    """Stops a running batch before its next document."""

    def __init__(self) -> None: ...
    def set(self) -> None: ...
    def is_set(self) -> bool: ...

def run_batch(
    ops: Sequence[Tuple[str, _Path, str]],
    *,
    workers: Optional[int] = None,
    group_size: int = 256,
    durability: str = "full",
    checksum: bool = False,
    timeout: Optional[float] = None,
    pretty: bool = False,
    progress: Optional[Callable[[int, int], Any]] = None,
    cancel: Optional[CancelFlag] = None,
) -> List[Tuple[str, Optional[BaseException]]]: ...
