"""Peak resident memory of this process over a stretch of work (Linux: VmHWM, reset via clear_refs)."""
from __future__ import annotations

import resource
from pathlib import Path


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """with PeakMemory() as m: ...; m.peak_mib, m.before_mib. Where the high-water mark cannot be reset
    (not Linux) the peak is the process's lifetime maximum and `resettable` is False."""

    def __enter__(self) -> "PeakMemory":
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.resettable = True
        except OSError:
            self.resettable = False
        self.before_mib = (_status_kib("VmRSS") or 0) / 1024
        return self

    def __exit__(self, *exc) -> None:
        hwm = _status_kib("VmHWM")
        if hwm is None:  # macOS: ru_maxrss in bytes; elsewhere KiB
            import sys
            raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            hwm = raw // 1024 if sys.platform == "darwin" else raw
        self.peak_mib = hwm / 1024
