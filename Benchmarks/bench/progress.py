"""Progress lines on stderr, each with the time since the run started."""

import sys
import time

_START = time.monotonic()


def log(message: str) -> None:
    elapsed = int(time.monotonic() - _START)
    sys.stderr.write(f"[bench {elapsed // 60:02d}:{elapsed % 60:02d}] {message}\n")
    sys.stderr.flush()
