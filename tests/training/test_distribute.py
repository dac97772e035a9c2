"""training.distribute with a real tf.distribute.MultiWorkerMirroredStrategy: two worker processes on localhost."""


from tests.training.helpers import run_tf_workers

# Each worker shards the records as distribute_py_dataset documents it, records[i::n][:len // n], for three
# datasets: one that fits and two whose shards would hold no batch.
WORKER = """
import json
from training.data import HeatmapDataset
from training.datasets.synthetic import synthetic_pose
from training.distribute import distribute_py_dataset, make_strategy

strategy, index, count = make_strategy("multi_worker")
result = {}
for n, drop in ((5, False), (1, False), (6, True)):
    ds = HeatmapDataset(synthetic_pose(n, image_size=(32, 32), num_keypoints=4), batch_size=4, input_size=(32, 32),
                        heatmap_size=(8, 8), sigma=1.0, drop_remainder=drop, shuffle=False)
    shards = []
    try:
        batches = [b for b in distribute_py_dataset(strategy, ds, shards)]
        result[n] = [len(batches), [[q is r for q in ds.records].index(True) for r in shards[0].records]]
    except ValueError as e:
        result[n] = str(e)
print("RESULT", json.dumps(result))
"""


def test_shards_without_a_batch_are_named(tmp_path):
    results = run_tf_workers(WORKER, cwd=tmp_path)
    for i, result in enumerate(results):
        # 5 records over 2 workers: 2 each (records 0, 2 / 1, 3), one batch of 2 per worker
        assert result["5"] == [1, [i, i + 2]]
        # was IndexError: batch index 0 out of range for 0 batches
        assert result["1"] == ("distribute_py_dataset: 1 records of HeatmapDataset split over 2 input pipelines (one "
                               "per worker) leave 0 records per pipeline, fewer than one batch; give at least 2 "
                               "records, or fewer workers")
        assert result["6"] == ("distribute_py_dataset: 6 records of HeatmapDataset split over 2 input pipelines (one "
                               "per worker) leave 3 records per pipeline, fewer than one full batch of 4 "
                               "(drop_remainder=True); give at least 8 records, or fewer workers")
