"""durafile: crash-safe, lock-safe, checksummed replacement of files, above all JSON state.

A crash mid-write leaves a truncated file; two writers clobber each other's update; a full disk
leaves half a file. durafile replaces a file's content so that none of that can happen, and
says exactly what it could not do when something fails. This package is the durafile Rust
library as a native module: every write, lock, checksum, migration and batch is the library's
own, so Python programs, Rust programs and the ``durafile`` command share the same files,
locks (``dir/.NAME.lock``), checksum sidecars (``NAME.sha256``) and temp names safely.

Limits first: atomicity needs a local POSIX filesystem (not NFS across clients); durability
needs a filesystem and drive that honour fsync; locks are advisory (they exclude durafile
writers, ``flock(1)`` on the lock file, and nobody else); Linux and macOS only.

The GIL is released for every lock wait, write, fsync and rename, so threads of a
``ThreadPoolExecutor`` really run in parallel; it is taken back only to call your code (an
update's ``fn``, a migration step), which runs under the file's lock.

Example::

    import durafile

    files = durafile.FileManager(checksum=True, indent=2)
    files.write_json_file("state.json", {"visits": 0})
    files.update_json_file("state.json", lambda s: s.update(visits=s["visits"] + 1))
    assert files.read_json_file("state.json") == {"visits": 1}
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import (
    IO,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Tuple,
    Type,
    Union,
)

from . import _native
from ._errors import (
    ChecksumError,
    ChecksumMismatch,
    Error,
    InvalidKey,
    LockTimeout,
    MigrationError,
)
from ._native import read, update, write

__all__ = [
    "write",
    "read",
    "update",
    "open",
    "lock",
    "verify",
    "recover",
    "FileManager",
    "DataHandler",
    "StateManager",
    "Migrator",
    "BatchProcessor",
    "Write",
    "Merge",
    "Error",
    "LockTimeout",
    "ChecksumError",
    "ChecksumMismatch",
    "InvalidKey",
    "MigrationError",
    "StateFallbackWarning",
    "AtomicWriter",
    "Lock",
    "CancelFlag",
    "VerifyReport",
    "VerifyResult",
    "RecoveryReport",
    "LoadedState",
    "Migrated",
    "DirMigration",
    "BatchReport",
    "BatchFuture",
    "Outcome",
]

try:
    from importlib.metadata import version as _version

    __version__ = _version("durafile")
except Exception:  # noqa: BLE001 - running from a source tree without metadata
    __version__ = "0+unknown"

PathLike = Union[str, "os.PathLike[str]"]
Lock = _native.Lock
CancelFlag = _native.CancelFlag

# --- whole files -------------------------------------------------------------------------------


class _Sink(io.RawIOBase):
    """The raw stream under an AtomicWriter's buffers: the native writer, or nothing once the
    new content was discarded."""

    def __init__(self, native: _native.AtomicWriter) -> None:
        super().__init__()
        self._native: Optional[_native.AtomicWriter] = native

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:  # type: ignore[override]
        native = self._native
        if native is None:  # discarded: what the buffers still hold is thrown away
            return len(memoryview(b))
        return native.write(bytes(b))


class AtomicWriter:
    """A new version of a file, written in pieces and published at once; see :func:`open`.

    It holds the file's exclusive lock from creation until :meth:`commit` or :meth:`discard`.
    Nothing is visible at the path before the commit. Used as a context manager it commits on
    a clean exit and discards on an exception (which then propagates).
    """

    def __init__(
        self,
        path: PathLike,
        mode: str = "w",
        *,
        durability: str = "full",
        checksum: bool = False,
        encoding: str = "utf-8",
        errors: Optional[str] = None,
        newline: Optional[str] = None,
        permissions: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> None:
        if mode not in ("w", "wb"):
            raise ValueError(f"durafile.open: mode must be 'w' or 'wb', not {mode!r}")
        self.mode = mode
        self._native = _native.AtomicWriter(
            os.fspath(path),
            durability=durability,
            mode=permissions,
            checksum=checksum,
            timeout=timeout,
        )
        self._sink = _Sink(self._native)
        buffered = io.BufferedWriter(self._sink, buffer_size=64 * 1024)
        self._stream: IO[Any]
        if mode == "w":
            self.encoding: Optional[str] = encoding
            self._stream = io.TextIOWrapper(
                buffered, encoding=encoding, errors=errors, newline=newline
            )
        else:
            self.encoding = None
            self._stream = buffered

    @property
    def name(self) -> str:
        """The path this writer replaces."""
        return self._native.path

    @property
    def temp_path(self) -> str:
        """The temp file the new content goes to until the commit."""
        return self._native.temp_path

    @property
    def closed(self) -> bool:
        """Whether the writer was committed or discarded."""
        return self._native.closed

    def writable(self) -> bool:
        return not self.closed

    def write(self, data: Any) -> int:
        """Appends ``data`` (str in mode "w", bytes in mode "wb")."""
        return self._stream.write(data)

    def writelines(self, lines: Iterable[Any]) -> None:
        self._stream.writelines(lines)

    def flush(self) -> None:
        """Hands buffered data to the temp file. This makes nothing durable or visible: only
        :meth:`commit` does."""
        self._stream.flush()

    def read_current(self) -> Optional[Union[str, bytes]]:
        """The file's current content (verified against its sidecar), None if it does not
        exist. No durafile writer can change it before this writer commits or discards."""
        current = self._native.read_current()
        if current is None or self.encoding is None:
            return current
        return current.decode(self.encoding)

    def commit(self) -> None:
        """Publishes the new content (fsync, rename, directory fsync) and releases the lock."""
        try:
            self._stream.flush()
        except BaseException:
            self.discard()
            raise
        try:
            self._native.commit()
        finally:
            self._sink._native = None
            self._stream.close()

    def discard(self) -> None:
        """Throws the new content away and releases the lock; the file is untouched."""
        if self.closed:
            return
        self._sink._native = None
        try:
            self._native.discard()
        finally:
            self._stream.close()

    def close(self) -> None:
        """Discards the new content unless it was committed."""
        self.discard()

    def __enter__(self) -> "AtomicWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    def __del__(self) -> None:
        # An abandoned writer must not hold the lock until the garbage collector runs.
        try:
            if not self.closed:
                self.discard()
        except Exception:
            pass


def open(  # noqa: A001 - the point is to read like the built-in
    path: PathLike,
    mode: str = "w",
    *,
    durability: str = "full",
    checksum: bool = False,
    encoding: str = "utf-8",
    errors: Optional[str] = None,
    newline: Optional[str] = None,
    permissions: Optional[int] = None,
    timeout: Optional[float] = None,
) -> AtomicWriter:
    """Opens a new version of ``path`` for writing, published atomically.

    ``mode`` is ``"w"`` (text, in ``encoding``) or ``"wb"`` (bytes). As a context manager the
    new content is committed on a clean exit and discarded on an exception, which propagates;
    either way the lock is released. ``permissions`` sets the file's mode bits (an existing
    file keeps its own otherwise); ``timeout`` bounds the wait for the lock, in seconds.

    Example::

        with durafile.open("report.csv", "w") as f:
            for row in rows:
                f.write(",".join(row) + "\\n")
    """
    return AtomicWriter(
        path,
        mode,
        durability=durability,
        checksum=checksum,
        encoding=encoding,
        errors=errors,
        newline=newline,
        permissions=permissions,
        timeout=timeout,
    )


def lock(path: PathLike, *, shared: bool = False, timeout: Optional[float] = None) -> Lock:
    """The lock every durafile writer of ``path`` takes, as a context manager.

    The lock is a flock on ``dir/.NAME.lock`` (the file need not exist), shared with the Rust
    library, the ``durafile`` command and ``flock(1)``. ``shared=True`` admits many readers
    and no writer. Waits at most ``timeout`` seconds (LockTimeout), forever without one, with
    the GIL released. A thread that holds a path's lock cannot write that path through
    durafile (that would deadlock; it raises an Error with kind ``"already_locked"``).

    Example::

        with durafile.lock("state.json"):
            ...  # no durafile writer changes state.json meanwhile
    """
    return Lock(os.fspath(path), shared=shared, timeout=timeout)


# --- verification and recovery -----------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    """One file checked by :func:`verify`.

    ``status`` is ``"ok"``, ``"mismatch"``, ``"bad_checksum_file"``, ``"missing"`` (the file
    is gone while its sidecar exists, or a file named does not exist), ``"no_checksum"`` (a
    file named explicitly has no sidecar) or ``"error"``.
    """

    path: str
    status: str
    digest: Optional[str] = None
    pending: bool = False
    error: Optional[BaseException] = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found; true when every file checked verifies."""

    results: List[VerifyResult]

    @property
    def ok(self) -> List[VerifyResult]:
        return [r for r in self.results if r.ok]

    @property
    def failed(self) -> List[VerifyResult]:
        return [r for r in self.results if not r.ok]

    def __bool__(self) -> bool:
        return not self.failed

    def __iter__(self) -> Iterator[VerifyResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)


def verify(*paths: PathLike, recursive: bool = False) -> VerifyReport:
    """Checks files against their checksum sidecars (``NAME.sha256``), like ``durafile
    verify``: each file named, and in each directory every file that has a sidecar
    (descending with ``recursive``). Returns a report; raises nothing for a mismatch."""
    found = _native.verify([os.fspath(p) for p in paths], recursive=recursive)
    return VerifyReport([VerifyResult(*entry) for entry in found])


@dataclass(frozen=True)
class RecoveryReport:
    """What :func:`recover` did (or, with ``dry_run``, would do) in a directory."""

    removed: List[str] = field(default_factory=list)
    """Temp files of dead writers, removed."""
    in_use: List[str] = field(default_factory=list)
    """Temp files of live writers, left alone."""
    checksums_completed: List[str] = field(default_factory=list)
    """Sidecars of interrupted writes, reduced to the current content's digest."""
    missing: List[str] = field(default_factory=list)
    """Sidecars whose data file is missing (kept as evidence)."""
    busy: List[str] = field(default_factory=list)
    """Files whose lock stayed held; not examined."""
    damaged: List[Error] = field(default_factory=list)
    """Files that fail verification (one exception each); listed, never changed."""

    def __bool__(self) -> bool:
        """True when nothing needs a person: no damaged, missing or busy file."""
        return not (self.damaged or self.missing or self.busy)


def recover(directory: PathLike, *, dry_run: bool = False) -> RecoveryReport:
    """Repairs ``directory`` (not its subdirectories) after a crash, like ``durafile
    recover``: removes dead writers' temp files (a live writer's are told apart by their
    lock, not their age), completes interrupted checksum updates, and lists, never deletes,
    files that fail verification. Safe while applications write."""
    return RecoveryReport(**_native.recover(os.fspath(directory), dry_run=dry_run))


# --- JSON ----------------------------------------------------------------------------------------


class _Json:
    """JSON through Python's own ``json`` module, as json.dumps/json.loads take it."""

    def __init__(
        self,
        indent: Optional[Union[int, str]],
        default: Optional[Callable[[Any], Any]],
        cls: Optional[Type[json.JSONEncoder]],
        object_hook: Optional[Callable[[Dict[str, Any]], Any]],
        sort_keys: bool,
        ensure_ascii: bool,
    ) -> None:
        self.indent = indent
        self.default = default
        self.cls = cls
        self.object_hook = object_hook
        self.sort_keys = sort_keys
        self.ensure_ascii = ensure_ascii
        # Compact JSON without spaces, as the Rust library and the CLI write it.
        self.separators = (",", ":") if indent is None else (",", ": ")

    def dumps(self, obj: Any, allow_nan: bool = True) -> str:
        return json.dumps(
            obj,
            indent=self.indent,
            separators=self.separators,
            default=self.default,
            cls=self.cls,
            sort_keys=self.sort_keys,
            ensure_ascii=self.ensure_ascii,
            allow_nan=allow_nan,
        )

    def encode(self, obj: Any) -> bytes:
        # A newline at the end, as the library writes: `cat` and editors like it.
        return (self.dumps(obj) + "\n").encode("utf-8")

    def loads(self, data: Union[str, bytes]) -> Any:
        return json.loads(data, object_hook=self.object_hook)


class FileManager:
    """Reads and writes JSON files with every durafile guarantee.

    Args:
        durability: ``"full"`` (the new content survives a power loss once the call
            returned), ``"consistent"`` (old or new after a power loss, one fsync fewer) or
            ``"none"`` (no fsync; still atomic for readers and killed processes).
        checksum: keep a SHA-256 sidecar for every file written, and refuse to read a file
            without one. Files that have a sidecar are verified on every read regardless.
        indent: pretty-print with this indent (as ``json.dumps``); None writes compact JSON.
        timeout: give up waiting for a file's lock after this many seconds (LockTimeout).
        default, cls, sort_keys, ensure_ascii: passed to ``json.dumps``.
        object_hook: passed to ``json.loads``.
    """

    def __init__(
        self,
        *,
        durability: str = "full",
        checksum: bool = False,
        indent: Optional[Union[int, str]] = None,
        timeout: Optional[float] = None,
        default: Optional[Callable[[Any], Any]] = None,
        cls: Optional[Type[json.JSONEncoder]] = None,
        object_hook: Optional[Callable[[Dict[str, Any]], Any]] = None,
        sort_keys: bool = False,
        ensure_ascii: bool = False,
    ) -> None:
        self.durability = durability
        self.checksum = checksum
        self.timeout = timeout
        self._json = _Json(indent, default, cls, object_hook, sort_keys, ensure_ascii)

    @property
    def indent(self) -> Optional[Union[int, str]]:
        return self._json.indent

    def _options(self) -> Dict[str, Any]:
        return {"durability": self.durability, "checksum": self.checksum, "timeout": self.timeout}

    def read_json_file(self, path: PathLike) -> Any:
        """Reads ``path`` as JSON, verified against its sidecar when it has one.

        Raises FileNotFoundError (a durafile.Error) when it does not exist, ChecksumMismatch
        when its content is corrupt, and json.JSONDecodeError when it is not JSON.
        """
        data = read(path, checksum=self.checksum or None, timeout=self.timeout)
        try:
            return self._json.loads(data)
        except json.JSONDecodeError as e:
            if hasattr(e, "add_note"):  # Python 3.11+: say which file
                e.add_note(f"durafile: parse {os.fspath(path)}")
            raise

    def write_json_file(self, path: PathLike, obj: Any) -> None:
        """Replaces ``path`` with ``obj`` as JSON, atomically. An object ``json`` cannot
        encode raises its TypeError before anything is touched."""
        write(path, self._json.encode(obj), **self._options())

    def update_json_file(
        self,
        path: PathLike,
        fn: Callable[[Any], Any],
        *,
        default: Callable[[], Any] = dict,
    ) -> Any:
        """Changes the document at ``path`` with no lost update, and returns what was written.

        ``fn(obj)`` gets the current document (``default()``, an empty dict unless told
        otherwise, when the file does not exist) and returns the new one; if it returns None,
        the object it was given, mutated in place, is written. It runs under the file's
        exclusive lock: every other durafile writer (thread, process, the CLI) waits. If it
        raises, the exception propagates unchanged and the file is untouched.
        """
        result: List[Any] = []

        def apply(current: Optional[bytes]) -> bytes:
            obj = self._json.loads(current) if current is not None else default()
            new = fn(obj)
            if new is None:
                new = obj
            result.append(new)
            return self._json.encode(new)

        update(path, apply, **self._options())
        return result[0]


class DataHandler:
    """Keyed JSON documents in one directory, ``directory/KEY.json``, each with every
    guarantee of a durafile write.

    Keys are checked before they touch the filesystem: a key names exactly one file directly
    inside the directory, never a path elsewhere, a hidden file or one of durafile's own
    (InvalidKey, a ValueError). Takes the options of :class:`FileManager`.
    """

    def __init__(self, directory: PathLike, **options: Any) -> None:
        self.files = FileManager(**options)
        self._native = _native.DataHandler(
            os.fspath(directory),
            durability=self.files.durability,
            checksum=self.files.checksum,
            timeout=self.files.timeout,
        )

    @property
    def directory(self) -> str:
        return self._native.directory

    def path_of(self, key: str) -> str:
        """The file that holds ``key``'s document."""
        return self._native.path_of(key)

    def save(self, key: str, obj: Any) -> None:
        """Saves ``obj`` under ``key``, replacing any earlier document atomically."""
        self.files.write_json_file(self.path_of(key), obj)

    def load(self, key: str) -> Any:
        """Loads ``key``'s document, verified; FileNotFoundError when there is none."""
        return self.files.read_json_file(self.path_of(key))

    def update(
        self, key: str, fn: Callable[[Any], Any], *, default: Callable[[], Any] = dict
    ) -> Any:
        """Changes ``key``'s document with no lost update (see FileManager.update_json_file)."""
        return self.files.update_json_file(self.path_of(key), fn, default=default)

    def save_to_path(self, path: PathLike, obj: Any) -> None:
        """Saves ``obj`` at an explicit path (anywhere, not a key), with the same guarantees."""
        self.files.write_json_file(path, obj)

    def delete(self, key: str) -> bool:
        """Deletes ``key``'s document and its sidecar under its lock; returns whether it
        existed."""
        return self._native.delete(key)

    def list(self) -> List[str]:
        """The keys of every document, sorted."""
        return self._native.list()

    def __contains__(self, key: str) -> bool:
        return os.path.isfile(self.path_of(key))

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())


class StateFallbackWarning(UserWarning):
    """The newest generations of a state failed to load and an older one was used."""


class LoadedState(NamedTuple):
    """A state loaded by StateManager.load, and where it came from."""

    state: Any
    generation: int
    skipped: List[Tuple[int, Error]]
    """Newer generations that failed to load, newest first, with why."""


class StateManager:
    """An application's state, saved as numbered generations (``directory/NAME.N.json``) so
    that a bad save never costs the state.

    Each save writes a new generation with every durafile guarantee and keeps the newest
    ``keep``. The current state is the newest generation that reads, verifies and parses: a
    crash during a save leaves the previous one current, and a damaged newest generation makes
    :meth:`load_current_state` fall back to an older one, with a StateFallbackWarning.
    Several processes can share one directory. Takes the options of :class:`FileManager`.
    """

    def __init__(
        self, directory: PathLike, *, name: str = "state", keep: int = 3, **options: Any
    ) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.files = FileManager(**options)
        self._native = _native.StateManager(
            os.fspath(directory),
            name=name,
            keep=keep,
            durability=self.files.durability,
            checksum=self.files.checksum,
            timeout=self.files.timeout,
        )

    @property
    def directory(self) -> str:
        return self._native.directory

    def save_current_state(self, obj: Any) -> int:
        """Saves ``obj`` as a new generation and returns its number."""
        return self._native.save(self.files._json.dumps(obj))

    def load(self) -> Optional[LoadedState]:
        """The current state with its generation and the newer generations that failed;
        None when nothing was saved. Raises Error (kind ``"no_good_state"``) when
        generations exist but none loads."""
        loaded = self._native.load()
        if loaded is None:
            return None
        text, generation, skipped = loaded
        return LoadedState(self.files._json.loads(text), generation, skipped)

    def load_current_state(self) -> Any:
        """The current state (None when nothing was saved). Falling back to an older
        generation is never silent: it warns with StateFallbackWarning."""
        loaded = self.load()
        if loaded is None:
            return None
        if loaded.skipped:
            why = "; ".join(f"generation {n}: {e}" for n, e in loaded.skipped)
            warnings.warn(
                f"loaded generation {loaded.generation} of {self.directory}: newer ones "
                f"failed ({why})",
                StateFallbackWarning,
                stacklevel=2,
            )
        return loaded.state

    def load_generation(self, generation: int) -> Any:
        """One generation's state."""
        return self.files._json.loads(self._native.load_generation(generation))

    def history(self) -> List[Tuple[int, str]]:
        """The generations on disk, newest first, as ``(number, path)``."""
        return self._native.history()

    def rollback(self, generation: int) -> int:
        """Makes ``generation`` current again by copying it, verified, into a new generation
        (so a rollback can itself be rolled back); returns the new generation's number."""
        return self._native.rollback(generation)


# --- migrations ----------------------------------------------------------------------------------


class Migrated(NamedTuple):
    """What Migrator.migrate_file did."""

    from_version: int
    to_version: int


@dataclass(frozen=True)
class DirMigration:
    """What Migrator.migrate_dir did, or with ``dry_run`` would do."""

    to: int
    migrated: List[Tuple[str, int]]
    """Documents migrated (or to migrate), as ``(key, version it had)``."""
    current: int
    """Documents already at the target version."""
    conflicts: List[str]
    """Documents someone else changed during the migration, left for a rerun."""
    resumed: bool
    """Whether an interrupted earlier migration was found and finished or undone first."""


class Migrator:
    """Versioned schema migrations of JSON documents, with Python functions as steps.

    A document's version lives in its ``field`` (missing means 0). Step N turns a version N-1
    document into a version N one; durafile sets the field to N after it. Register steps with
    ``migrator.step(n, fn)`` or as a decorator, ``@migrator.step(n)``.

    :meth:`migrate_dir` migrates every document of a directory **all or nothing**: a step
    that raises, or a crash, leaves every document at its old version (after the next run or
    :meth:`recover_dir`), or every one at the new version, each migrated exactly once. Steps
    see and return plain JSON values (dicts, lists, str, int, float, bool, None); the
    library writes the results. Takes the options of :class:`FileManager` (``indent`` makes
    the library indent with two spaces).

    Example::

        migrator = durafile.Migrator()

        @migrator.step(1)
        def add_tags(doc):
            doc["tags"] = []
            return doc

        migrator.migrate_dir("data/users")
    """

    def __init__(self, *, field: str = "schema_version", **options: Any) -> None:
        self.field = field
        self.files = FileManager(**options)
        self._steps: Dict[int, Callable[[Any], Any]] = {}

    def step(self, to: int, fn: Optional[Callable[[Any], Any]] = None) -> Any:
        """Adds the step that migrates a version ``to - 1`` document to version ``to``.
        Returns ``fn``, or a decorator when ``fn`` is omitted."""
        if to < 1:
            raise ValueError("steps are numbered from 1")

        def register(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
            self._steps[to] = f
            return f

        return register if fn is None else register(fn)

    @property
    def latest(self) -> int:
        """The newest version the steps reach (0 without steps)."""
        return max(self._steps, default=0)

    def _native_steps(self) -> List[Tuple[int, Callable[[str], str]]]:
        codec = self.files._json

        def wrap(f: Callable[[Any], Any]) -> Callable[[str], str]:
            def run(text: str) -> str:
                doc = codec.loads(text)
                new = f(doc)
                return codec.dumps(doc if new is None else new, allow_nan=False)

            return run

        return [(to, wrap(f)) for to, f in sorted(self._steps.items())]

    def _options(self) -> Dict[str, Any]:
        opts = self.files._options()
        opts["pretty"] = self.files.indent is not None
        return opts

    def migrate_value(self, doc: Any, to: Optional[int] = None) -> Tuple[Any, int]:
        """Migrates ``doc`` in memory; returns it with the version it had."""
        codec = self.files._json
        text, from_version = _native.migrate_value(
            codec.dumps(doc, allow_nan=False), self._native_steps(), field=self.field, to=to
        )
        return codec.loads(text), from_version

    def migrate_file(self, path: PathLike, *, to: Optional[int] = None) -> Migrated:
        """Migrates one file in place, atomically and under its lock."""
        return Migrated(
            *_native.migrate_file(
                os.fspath(path), self._native_steps(), field=self.field, to=to, **self._options()
            )
        )

    def migrate_dir(
        self,
        directory: Union[PathLike, DataHandler],
        *,
        to: Optional[int] = None,
        dry_run: bool = False,
        progress: Optional[Callable[[str, int, int], None]] = None,
    ) -> DirMigration:
        """Migrates every document of a DataHandler directory (``KEY.json``) to version
        ``to`` (default: the latest step), all or nothing. A step's exception propagates
        unchanged, with no document changed. ``progress(phase, done, total)`` is called as
        documents are staged (``"stage"``) and applied (``"apply"``)."""
        if isinstance(directory, DataHandler):
            directory = directory.directory
        report = _native.migrate_dir(
            os.fspath(directory),
            self._native_steps(),
            field=self.field,
            to=to,
            dry_run=dry_run,
            progress=progress,
            **self._options(),
        )
        return DirMigration(**report)

    def recover_dir(self, directory: Union[PathLike, DataHandler]) -> Optional[List[str]]:
        """Finishes or undoes a directory migration that a crash interrupted (migrate_dir does
        this first by itself). None when there was nothing to do, else the keys that someone
        changed meanwhile, left unmigrated."""
        if isinstance(directory, DataHandler):
            directory = directory.directory
        opts = self.files._options()
        return _native.recover_migration(os.fspath(directory), **opts)


# --- batches -------------------------------------------------------------------------------------


class Write(NamedTuple):
    """A batch operation: replace the document at ``path`` with ``value``."""

    path: PathLike
    value: Any


class Merge(NamedTuple):
    """A batch operation: apply an RFC 7396 merge patch to the document at ``path`` (objects
    merge key by key, None removes a key, anything else replaces; a missing document starts
    empty)."""

    path: PathLike
    patch: Any


class Outcome(NamedTuple):
    """What became of one batch operation: status ``"applied"``, ``"failed"`` (with the
    error), ``"applied_durability_unknown"`` (the new content is in place but the directory
    fsync that makes it durable failed; the error says so) or ``"cancelled"`` (not
    attempted)."""

    status: str
    error: Optional[Error]


@dataclass(frozen=True)
class BatchReport:
    """The outcome of every operation of a batch, in the order given."""

    outcomes: List[Outcome]

    @property
    def applied(self) -> int:
        """Operations whose new content is in place, durable or not."""
        return sum(o.status.startswith("applied") for o in self.outcomes)

    @property
    def durability_unknown(self) -> int:
        """Applied operations whose durability is unknown (a failed directory fsync)."""
        return sum(o.status == "applied_durability_unknown" for o in self.outcomes)

    @property
    def failed(self) -> int:
        return sum(o.status == "failed" for o in self.outcomes)

    @property
    def cancelled(self) -> int:
        return sum(o.status == "cancelled" for o in self.outcomes)

    @property
    def errors(self) -> List[Tuple[int, Error]]:
        """``(index, error)`` of every failed operation."""
        return [(i, o.error) for i, o in enumerate(self.outcomes) if o.status == "failed"]

    def raise_first(self) -> None:
        """Raises the first failed operation's error, if any."""
        for _, error in self.errors:
            raise error


class BatchFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """A running batch (see BatchProcessor.submit), a concurrent.futures.Future of a
    BatchReport. ``cancel()`` also stops a batch that is already running before its next
    document (those not started are reported "cancelled")."""

    def __init__(self) -> None:
        super().__init__()
        self._flag = _native.CancelFlag()

    def cancel(self) -> bool:
        self._flag.set()
        return super().cancel()


class BatchProcessor:
    """Many JSON writes and merge patches at once, on a pool of native threads, with group
    commit.

    Operations on one document apply in the order given, under its lock, to its current
    content, so concurrent batches, threads and processes never tear a file or lose an update.
    Up to ``group_size`` documents are committed together with one directory fsync, which
    makes many small writes far cheaper than one by one. A batch is not a transaction across
    files: a crash part-way leaves each file whole, some old and some new. Takes the options
    of :class:`FileManager` (values are encoded with its ``json`` settings).

    ``run`` blocks with the GIL released, so it can run in any executor; ``submit`` returns a
    concurrent.futures.Future right away. Example::

        batch = durafile.BatchProcessor()
        report = batch.run([durafile.Merge("stock.json", {"sku1": 3}),
                            durafile.Write("prices.json", {"sku1": 9.5})])
        report.raise_first()
    """

    def __init__(
        self, *, workers: Optional[int] = None, group_size: int = 256, **options: Any
    ) -> None:
        self.workers = workers
        self.group_size = group_size
        self.files = FileManager(**options)

    def _encode(self, ops: Iterable[Union[Write, Merge]]) -> List[Tuple[str, str, str]]:
        codec = self.files._json
        encoded = []
        for op in ops:
            if isinstance(op, Write):
                encoded.append(("write", os.fspath(op.path), codec.dumps(op.value, allow_nan=False)))
            elif isinstance(op, Merge):
                encoded.append(("merge", os.fspath(op.path), codec.dumps(op.patch, allow_nan=False)))
            else:
                raise TypeError(f"a batch operation is durafile.Write or durafile.Merge, not {op!r}")
        return encoded

    def _run(
        self,
        encoded: List[Tuple[str, str, str]],
        progress: Optional[Callable[[int, int], None]],
        flag: Optional[_native.CancelFlag],
    ) -> BatchReport:
        opts = self.files._options()
        outcomes = _native.run_batch(
            encoded,
            workers=self.workers,
            group_size=self.group_size,
            pretty=self.files.indent is not None,
            progress=progress,
            cancel=flag,
            **opts,
        )
        return BatchReport([Outcome(*o) for o in outcomes])

    def run(
        self,
        ops: Iterable[Union[Write, Merge]],
        *,
        progress: Optional[Callable[[int, int], None]] = None,
        cancel: Optional[CancelFlag] = None,
    ) -> BatchReport:
        """Runs ``ops`` to the end and reports each one's outcome; a failing operation does
        not stop the others. ``progress(done, total)`` is called after each group commits;
        setting ``cancel`` (a durafile.CancelFlag) stops the batch before its next document."""
        return self._run(self._encode(ops), progress, cancel)

    def submit(
        self,
        ops: Iterable[Union[Write, Merge]],
        *,
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> BatchFuture:
        """Starts ``ops`` on a background thread and returns a BatchFuture at once; use it
        with ``concurrent.futures.wait``/``as_completed`` like any future."""
        encoded = self._encode(ops)  # encoding errors are the caller's, raised here
        future = BatchFuture()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(self._run(encoded, progress, future._flag))
            except BaseException as e:  # noqa: BLE001 - handed to the future's owner
                future.set_exception(e)

        threading.Thread(target=work, name="durafile-batch", daemon=True).start()
        return future
