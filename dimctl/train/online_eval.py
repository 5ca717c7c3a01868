"""Online evaluation while pretraining (`dimctl pretrain --eval-every N`): the frozen encoder's
layers scored by weighted kNN (evaluate/knn.py: cosine, k=200, votes exp(cos / 0.07)), the number
solo-learn and lightly log, so a user sees whether the representation still improves.

The bank is the first ``images`` training images, the queries the first ``images`` test images,
unaugmented and normalised as `dimctl extract` does; the same encoder and split through
`dimctl extract | dimctl probe --classifier knn --knn-weights distance --knn-k 200 --knn-bank IMAGES`
give the same accuracy when the test split has at most ``images`` images (every built-in labelled
dataset's at the default 10,000; probe always scores the whole test split). The encoder runs in eval mode (BatchNorm's running statistics, nothing updated) and
under no randomness, so a run's training, and its bit-exact resume, are unchanged by it.
"""

import torch
from torch import nn

from dimctl.data.dataset import ImageDataset
from dimctl.errors import UsageError
from dimctl.evaluate.extract import iter_features
from dimctl.evaluate.knn import PAPER_K, PAPER_TEMPERATURE, knn_predict


class OnlineKNN:
    def __init__(self, dataset: ImageDataset, layers: list[str], images: int, device: torch.device,
                 crop_size: int = 0, batch_size: int = 256):
        train_y, test_y = dataset.train_labels, dataset.test_labels
        if train_y.ndim != 1 or (train_y < 0).any() or (test_y < 0).any() or test_y.shape[0] == 0:
            raise UsageError(f"--eval-every needs one class label per image in both splits; {dataset.name} has not")
        self.bank, self.bank_labels = dataset.train_images[:images], train_y[:images]
        self.queries, self.query_labels = dataset.test_images[:images], test_y[:images]
        if crop_size:  # the encoder sees crop_size windows in training: score the centre one
            top = (self.bank.shape[-1] - crop_size) // 2
            self.bank, self.queries = (a[..., top:top + crop_size, top:top + crop_size] for a in (self.bank, self.queries))
        self.layers, self.device, self.batch_size = layers, device, batch_size
        self.num_classes = int(max(train_y.max(), test_y.max())) + 1

    def __call__(self, encoder: nn.Module) -> dict[str, float]:
        """{"knn_LAYER": test accuracy} for each layer; leaves ``encoder`` in the mode it found it."""
        was_training = encoder.training
        try:
            bank = self._features(encoder, self.bank)
            queries = self._features(encoder, self.queries)
        finally:
            encoder.train(was_training)
        out = {}
        for layer in self.layers:
            predicted = knn_predict(bank[layer], self.bank_labels.to(self.device), queries[layer], PAPER_K,
                                    "distance", PAPER_TEMPERATURE, self.num_classes)
            out[f"knn_{layer}"] = float((predicted.cpu() == self.query_labels).float().mean())
        return out

    def _features(self, encoder: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = {layer: [] for layer in self.layers}
        for _, batch in iter_features(encoder, images, self.layers, self.batch_size, self.device):
            for layer, values in batch.items():
                parts[layer].append(torch.from_numpy(values.reshape(values.shape[0], -1)).to(self.device))
        return {layer: torch.cat(values) for layer, values in parts.items()}
