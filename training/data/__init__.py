"""Batches for ``model.fit``: :class:`HeatmapDataset` (top-down pose) and :class:`SegmentationDataset`.

Both are ``keras.utils.PyDataset`` subclasses built from plain sample records
(:mod:`training.datasets`); in a data worker process (:mod:`training.workers`), which only makes batches,
of a stand-in with its interface, so that workers import no Keras. ``__getitem__`` returns a whole batch and ``len()`` counts batches.
They hold only records, numbers and small dataclasses -- no generators, lambdas, open files or
backend tensors -- so they pickle into worker processes (``workers=N, use_multiprocessing=True``,
fork or spawn); images are opened inside ``__getitem__``.

Randomness: sample ``pos`` of batch ``idx`` in epoch ``e`` draws from
``np.random.default_rng([seed, e, idx, pos])`` and the sample order of epoch ``e`` is a
permutation seeded by ``(seed, e)`` (recomputed in ``on_epoch_end``). A batch is therefore a pure
function of ``(seed, epoch, idx)``: workers never repeat each other's augmentation, and
``workers=0`` and ``workers=N`` runs give identical batches. Pass ``shuffle=False`` to
``model.fit`` (Keras would otherwise shuffle batch indices with an unseeded RNG);
:func:`training.fit` does this, and keeps ``epoch`` in step after a resume (:class:`EpochSync`).

Layout:
    - :mod:`training.data.base`: :class:`~training.data.base.RecordDataset` (what both share: order, per-sample
      RNG, workers, errors and skips) and :class:`EpochSync`.
    - :mod:`training.data.pose`: :class:`HeatmapDataset` (crop, augment, heatmap targets).
    - :mod:`training.data.segmentation`: :class:`SegmentationDataset` (fit or crop image and mask together).

Note:
    B = batch, K = keypoints, C = classes; ``input_size``/``heatmap_size`` are ``(w, h)``, arrays
    ``(B, H, W, ...)``. Keypoints are 0-based float pixels, (x, y).
"""

from training.data.base import EpochSync
from training.data.pose import HeatmapDataset
from training.data.segmentation import SegmentationDataset
from training.normalization import FEEDS, Normalization, model_feed
from training.transforms import Augmentation

__all__ = ["Augmentation", "Normalization", "HeatmapDataset", "SegmentationDataset", "EpochSync", "FEEDS",
           "model_feed"]
