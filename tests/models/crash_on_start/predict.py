"""Control plane tests: the process dies while loading (not an import error: exit code 1, as a segfault would)."""

import os

print("about to crash", flush=True)
os._exit(1)
