"""Keys in a JSON file: the embedded default, hashes only, safe against half-written files.

The file is ``{"keys": [record, ...]}``. Writers (the ``keys`` command, ``POST /admin/keys``,
any number of processes) take an exclusive lock on ``PATH.lock``, read the file, write the new
content to a temporary file in the same directory and rename it over the old one, so a reader
sees the old file or the new one, never half of one. A running server notices a new file by
its inode, size and modification time (checked by the key cache about once a second).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Hashable, Iterator

from .records import ApiKey

__all__ = ["FileKeyStore", "KeysFileError"]

log = logging.getLogger("monoai_tornado.keys")


class KeysFileError(ValueError):
    """The keys file exists but is not a keys file (bad JSON or records)."""


class FileKeyStore:
    """Keys kept in a JSON file at ``path`` (created with the first key)::

        store = FileKeyStore("keys.json")
        ring = KeyRing(store)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._records: list[ApiKey] = []
        self._by_hash: dict[str, ApiKey] = {}
        self._signature: Hashable = None
        self._reload(strict=True)

    # -- reading -----------------------------------------------------------------------------

    def _stat(self) -> Hashable:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self) -> list[ApiKey]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        try:
            data: Any = json.loads(text) if text.strip() else {"keys": []}
            return [ApiKey.from_json(item) for item in data["keys"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeysFileError(f"{self.path} is not a keys file: {type(exc).__name__}: {exc}") from None

    def _reload(self, *, strict: bool = False) -> None:
        """Read the file again if it changed; a broken file keeps the keys known (logged)."""
        signature = self._stat()
        if signature == self._signature and self._signature is not None:
            return
        try:
            records = self._read()
        except KeysFileError:
            if strict:
                raise
            log.error("keys file %s cannot be read; keeping the %d keys known", self.path, len(self._records),
                      exc_info=True)
            self._signature = signature
            return
        self._set(records, signature)

    def _set(self, records: list[ApiKey], signature: Hashable) -> None:
        self._records = records
        self._by_hash = {record.hash: record for record in records}
        self._signature = signature

    # -- writing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[ApiKey]]:
        """The records as on disk, under an exclusive lock; the list is written back on exit."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                records = self._read()
                yield records
                self._write(records)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, records: list[ApiKey]) -> None:
        text = json.dumps({"keys": [record.to_json() for record in records]}, indent=1, ensure_ascii=False)
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text + "\n")
                out.flush()
                os.fsync(out.fileno())
                st = os.fstat(out.fileno())  # the file renamed below: what a later stat will see
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self._set(records, (st.st_ino, st.st_size, st.st_mtime_ns))

    # -- the store protocol ------------------------------------------------------------------

    async def find(self, key_hash: str) -> ApiKey | None:
        return self._by_hash.get(key_hash)

    async def add(self, record: ApiKey) -> None:
        with self._locked() as records:
            records.append(record)

    async def all(self) -> list[ApiKey]:
        self._reload()
        return list(self._records)

    async def revoke(self, key_id: str) -> ApiKey | None:
        with self._locked() as records:
            for index, record in enumerate(records):
                if record.id == key_id:
                    records[index] = record.revoke()
                    return records[index]
        return None

    async def version(self) -> Hashable:
        self._reload()
        return self._signature

    async def aclose(self) -> None:
        pass
