"""The endpoint runtime: an ASGI app on uvicorn that serves a user's functions from route specs.

Launched as `python -m trainml_cli.runtime` (see config.py); imports only the shared leaves, its server
libraries and the user's code.
"""
