"""The names of the probe classifiers, in evaluate/probes.py's order, without importing it (it
imports torch): `dimctl probe --help` names them and starts in milliseconds.
tests/cli/test_startup.py checks that they are the keys of ``probes.CLASSIFIERS``."""

CLASSIFIER_NAMES = ("svm", "svm-torch", "mlp", "logreg", "knn")
