"""training.distribute with a real tf.distribute.MultiWorkerMirroredStrategy: two worker processes on localhost."""


import numpy as np

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


# JAX with two (host) devices: a model the caller built before fit (zoo.get, keras.Model) holds its variables on
# device 0, and DataParallel's jitted step refused them ("Received incompatible devices for jitted computation");
# fit now re-creates it inside the distribution, as for tf.distribute. Checked against a plain single-device run:
# data parallelism splits each batch, the mean gradient is the same.
TWO_DEVICES = """
import json
import numpy as np
import keras
from tests.training.helpers import tiny_pose_model
from training import fit
from training.data import HeatmapDataset
from training.datasets.synthetic import synthetic_pose

assert len(keras.distribution.list_devices()) == 2
out = {}
for dist in ("none", "data_parallel"):
    keras.utils.set_random_seed(0)
    model = tiny_pose_model(outputs=1)
    ds = HeatmapDataset(synthetic_pose(16, image_size=(32, 32), num_keypoints=4, seed=3), batch_size=8,
                        input_size=(32, 32), heatmap_size=(8, 8), sigma=1.0, shuffle=False, augment=False)
    res = fit(model, ds, epochs=2, distribution=dist, learning_rate=1e-2, verbose=0, preset="default")
    out[dist] = [np.asarray(w).tolist() for w in res.model.get_weights()]
print("RESULT", json.dumps(out))
"""


def test_jax_data_parallel_takes_a_model_built_before_fit(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run([sys.executable, "-c", TWO_DEVICES], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=600)
    lines = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    assert r.returncode == 0 and lines, r.stderr[-3000:]
    out = json.loads(lines[-1][7:])
    for single, parallel in zip(out["none"], out["data_parallel"]):
        np.testing.assert_allclose(parallel, single, rtol=1e-4, atol=1e-6)
