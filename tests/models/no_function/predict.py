"""Defines a function, just not the one the route names."""


def predict_image(filename):
    return filename
