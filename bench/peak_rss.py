"""Peak resident memory of this process while a block of code runs, for the bench scripts."""

from __future__ import annotations

import threading


class PeakRss:
    """Sample this process's resident set size every ``interval`` seconds from /proc/self/status."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def current_bytes() -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self.current_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self.start_bytes = self.current_bytes()
        self.peak_bytes = self.start_bytes
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self.current_bytes())
