"""Imports a package that exists only as a wheel the test builds and serves through pip's find-links."""

import trainml_fixture_pkg


def hello():
    return {"hello": trainml_fixture_pkg.HELLO}
