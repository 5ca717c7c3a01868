"""The settings of the probes (`dimctl probe`), declared once: each field carries its option's help
and range (dimctl/settings.py), so the command's options are derived from it. Free of torch and
numpy, so `dimctl probe --help` reads it without importing either."""

from dataclasses import dataclass

from dimctl.settings import declared_problem, setting

KNN_WEIGHTS = ("distance", "uniform")  # evaluate/knn.py's votes


@dataclass(frozen=True)
class ProbeConfig:
    """How each probe trains (evaluate/probes.py)."""

    seed: int = setting(0, "Seed of the stochastic classifiers.")
    mlp_epochs: int = setting(50, "Training epochs of the mlp probe.", positive=True)
    mlp_lr: float = setting(1e-3, "Adam learning rate of the mlp probe (decayed ×0.1 at 50% and 75%).", positive=True)
    svm_c: float = setting(1.0, "Regularisation C of the linear SVM.", positive=True)
    svm_tol: float = setting(1e-4, "Tolerance of the ADMM linear SVM (relative gradient norm per class).",
                             positive=True)  # evaluate/linear_svm.py
    svm_max_iter: int = setting(1000, "Iteration cap of the ADMM linear SVM.", positive=True)
    knn_k: int = setting(10, "Neighbours of the knn probe (200 in the weighted protocol of SSL papers).", positive=True)
    knn_weights: str = setting("uniform", "knn votes: uniform (a majority vote) or distance (each neighbour weighted "
                                          "exp(cosine / --knn-temperature), the protocol of InstDisc, solo-learn and "
                                          "lightly; with --knn-k 200).", choices=KNN_WEIGHTS)
    knn_temperature: float = setting(0.07, "Temperature of the distance-weighted knn vote.", positive=True)
    knn_bank: int = setting(0, "Only the first N training samples as the knn bank (0: all). With --knn-weights "
                               "distance --knn-k 200 and N = pretrain's --eval-images (10,000), the bank its online "
                               "kNN uses.", minimum=0)
    svm_exact_max: int = setting(20_000, "libsvm's SVC up to this many training samples, ADMM above.", cli=False,
                                 minimum=0)
    mlp_batch_size: int = setting(128, "Minibatch of the mlp probe.", cli=False, positive=True)

    def validate(self) -> "ProbeConfig":
        """Every declared range and choice; a ValueError names the first option outside it."""
        problem = declared_problem(self)
        if problem:
            raise ValueError(problem)
        return self
