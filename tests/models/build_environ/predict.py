"""Answers with the variable names its own package's build saw (requirements.txt installs ./buildseen)."""

import trainml_fixture_buildseen


def names():
    return trainml_fixture_buildseen.NAMES
