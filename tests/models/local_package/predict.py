"""Answers with what its own library says: the library is a package in this folder, installed by requirements.txt."""

import trainml_fixture_mylib


def answer():
    return {"answer": trainml_fixture_mylib.ANSWER}
