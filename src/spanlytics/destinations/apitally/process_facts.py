"""Facts about this process that Apitally's clients report: its resident memory and when it
started. Linux reads ``/proc``; elsewhere psutil when it is installed; else None."""

from __future__ import annotations

import os
import time

__all__ = ["process_start_time", "rss_bytes"]


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # type: ignore[import-untyped,import-not-found,unused-ignore]  # optional

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return None


def process_start_time() -> float:
    """When this process started (seconds since the epoch), as psutil's ``create_time``; the
    time of the call where ``/proc`` is not there to say."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            after_name = stat.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as system:
            boot = next(int(line.split()[1]) for line in system if line.startswith(b"btime"))
        return boot + int(after_name[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()
