"""Log tests: prints `n` lines in one call, as fast as Python can (a flood)."""

import sys


def flood(n):
    for start in range(0, n, 1000):
        sys.stdout.write("".join(f"flood line {i}\n" for i in range(start, min(n, start + 1000))))
    sys.stdout.flush()
    return {"printed": n}
