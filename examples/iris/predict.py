"""An iris classifier with scikit-learn: trained once at start on the data set scikit-learn ships (no download).

The platform's Python does not need scikit-learn: the job names it (`--pip-packages scikit-learn`) and gets an
environment of its own.
"""

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

IRIS = load_iris()
MODEL = LogisticRegression(max_iter=1000).fit(IRIS.data, IRIS.target)


def predict(sepal_length, sepal_width, petal_length, petal_width):
    features = [[sepal_length, sepal_width, petal_length, petal_width]]
    probabilities = MODEL.predict_proba(features)[0]
    best = int(probabilities.argmax())
    return {
        "species": str(IRIS.target_names[best]),
        "probabilities": {str(name): round(float(p), 4) for name, p in zip(IRIS.target_names, probabilities)},
    }
