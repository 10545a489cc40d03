"""The `trainml` command line: a thin layer over the SDK (and, for `endpoint serve`, the runtime)."""
