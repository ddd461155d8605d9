"""The on-disk spool: batches that could not be delivered yet, one file each.

Files are ``<created_ns>-<records>-<batch_id>.batch`` (mode 0600, in a 0700 directory per
destination and account), written atomically (temp file, fsync, rename) under a lock that
also makes room first, so the directory never exceeds its byte cap; batches older than the
age cap are dropped. A sender claims a file by renaming it to ``….claimed.<pid>``: several
processes sharing a spool never send one twice, and a dead process's claims are adopted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from spanlytics._throttle import ThrottledLogger
from spanlytics.delivery.batches import Batch

_log = ThrottledLogger(logging.getLogger("spanlytics.spool"))


def default_spool_dir() -> str:
    """``$SPANLYTICS_SPOOL_DIR``, else ``$XDG_CACHE_HOME/spanlytics/spool`` (``~/.cache``)."""
    configured = os.environ.get("SPANLYTICS_SPOOL_DIR")
    if configured:
        return configured
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "spanlytics", "spool")


class Spool:
    """Batches on disk: ``<created_ns>-<records>-<batch_id>.batch``, claimed by rename."""

    SUFFIX = ".batch"

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, max_age_s: float) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.enabled = True
        self.dropped_records: dict[str, int] = {"spool_full": 0, "spool_expired": 0}
        self._lock = threading.Lock()  # writers: the exporter thread and the sender's worker

    def _disable(self, exc: OSError) -> None:
        self.enabled = False
        _log.warning(
            f"spool.disabled.{self.directory}",
            "spanlytics spool %s is not writable (%s); keeping batches in memory only",
            self.directory,
            type(exc).__name__,
        )

    def write(self, batch: Batch) -> bool:
        """Store ``batch`` atomically; False when the spool is unusable.

        Room is made *before* the file appears (oldest batches out), so the directory never
        holds more than ``max_bytes``. A batch larger than the whole cap is dropped, counted.
        """
        if not self.enabled:
            return False
        name = f"{int(batch.created * 1e9):020d}-{batch.records}-{batch.batch_id}{self.SUFFIX}"
        header = json.dumps(
            {
                "path": batch.path,
                "content_type": batch.content_type,
                "batch_id": batch.batch_id,
                "records": batch.records,
                "created": batch.created,
            }
        ).encode()
        data = len(header).to_bytes(4, "big") + header + batch.body
        if len(data) > self.max_bytes:
            with self._lock:
                self.dropped_records["spool_full"] += batch.records
            return True
        try:
            with self._lock:  # make room, write, rename: at no instant over the cap
                self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._enforce_caps(reserve=len(data))
                tmp = self.directory / f".{name}.{os.getpid()}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, self.directory / name)
        except OSError as exc:
            self._disable(exc)
            return False
        return True

    def has_leftovers(self) -> bool:
        """Batches on disk, unclaimed or claimed by a process that is gone."""
        try:
            return any(n.endswith(self.SUFFIX) or ".claimed." in n for n in os.listdir(self.directory))
        except OSError:
            return False

    def _scan(self) -> tuple[list[tuple[str, int, int]], int]:
        """One listing: (name, size, records) of unclaimed batches oldest first, and the
        bytes of batches claimed for a send (still on disk, and they may come back)."""
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return [], 0
        entries, claimed = [], 0
        for name in names:
            unclaimed = name.endswith(self.SUFFIX)
            if not unclaimed and ".claimed." not in name:
                continue
            try:
                size = (self.directory / name).stat().st_size
            except OSError:
                continue  # claimed or released by another process meanwhile
            if unclaimed:
                entries.append((name, size, _records_of(name)))
            else:
                claimed += size
        return entries, claimed

    def _entries(self) -> list[tuple[str, int, int]]:
        """(name, size, records) of unclaimed batches, oldest first."""
        return self._scan()[0]

    def enforce_caps(self) -> None:
        """Drop the oldest batches beyond the age cap, then beyond the size cap."""
        with self._lock:
            self._enforce_caps()

    def _enforce_caps(self, reserve: int = 0) -> None:
        entries, claimed = self._scan()
        cutoff_ns = (time.time() - self.max_age_s) * 1e9
        total = sum(size for _, size, _ in entries) + claimed + reserve
        for name, size, records in entries:
            too_old = _created_ns_of(name) < cutoff_ns
            if not too_old and total <= self.max_bytes:
                break
            if _unlink(self.directory / name):
                self.dropped_records["spool_expired" if too_old else "spool_full"] += records
                total -= size

    def claim_oldest(self) -> tuple[Batch, Path] | None:
        """Take the oldest batch (also ones left claimed by a process that died)."""
        self._adopt_orphans()
        for name, _, _ in self._entries():
            claimed = self.directory / f"{name}.claimed.{os.getpid()}"
            try:
                os.rename(self.directory / name, claimed)  # atomic: one claimer wins
                data = claimed.read_bytes()
                size = int.from_bytes(data[:4], "big")
                meta: dict[str, Any] = json.loads(data[4 : 4 + size])
                batch = Batch(
                    data[4 + size :],
                    int(meta["records"]),
                    str(meta["path"]),
                    str(meta["content_type"]),
                    str(meta["batch_id"]),
                    float(meta["created"]),
                )
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError) as exc:  # TypeError: a header not an object
                _log.warning("spool.corrupt", "dropping an unreadable spool file (%s)", type(exc).__name__)
                _unlink(claimed)
                continue
            return batch, claimed
        return None

    def release(self, claimed: Path) -> None:
        """Give a claimed batch back (its delivery failed; try again later)."""
        with contextlib.suppress(OSError):
            os.rename(claimed, self.directory / claimed.name.split(".claimed.")[0])

    def _adopt_orphans(self) -> None:
        try:
            names = [n for n in os.listdir(self.directory) if ".claimed." in n]
        except OSError:
            return
        for name in names:
            pid = name.rsplit(".", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                self.release(self.directory / name)


def _records_of(name: str) -> int:
    parts = name.split("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else 0


def _created_ns_of(name: str) -> int:
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
