"""Where endpoints run: base.py (the interface), local.py (this machine), ray.py (Ray Serve over HTTP)."""
