"""PyDataset worker processes under the spawn start method: same batches as workers=0, errors not hangs.

Datasets with ``use_multiprocessing=True`` use their own persistent processes (training.workers) by
default, Keras' per-epoch pool with ``persistent_workers=False``: both are checked.

Each test runs in a fresh interpreter (the start method is per program) with a timeout, so a hang
fails the test instead of stalling the suite. The batches and crash tests share one spawn-method child, the two
Ctrl-C tests another, each case in its own function with its own result line: a child, like each of its spawned
workers, imports Keras and its backend first (4-6 CPU-s under TensorFlow).
"""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.training.helpers import CHILDREN_SOURCE, ROOT, run_python

# Every test but one, which runs its child under JAX whatever the suite's backend: the JAX pass of ./dev test
# would run that same process a second time.
agnostic = pytest.mark.backend_agnostic

COMMON = """
import hashlib, json, multiprocessing, os, sys
import numpy as np

def make(cls, n, workers, mp, **kw):
    from training.datasets.synthetic import synthetic_pose
    return cls(synthetic_pose(n, image_size=(32, 32), num_keypoints=4, seed=3), batch_size=4, input_size=(32, 32),
               heatmap_size=(8, 8), sigma=1.0, augment=True, seed=11, workers=workers, use_multiprocessing=mp, **kw)
"""

# For the main block of a child that runs several cases (module-level functions, so spawned workers find what
# they need): each prints its ``RESULT <case> {json}`` line, or ``{"error": traceback}``, and the next one runs.
RUN_CASES = """
def run_cases(*cases):
    import traceback
    for case in cases:
        try:
            result = case()
        except BaseException:  # noqa: BLE001 - a KeyboardInterrupt a case did not catch is its failure too
            result = {"error": traceback.format_exc()}
        if result is not None:
            print("RESULT " + case.__name__ + " " + json.dumps(result), flush=True)
"""


def case_result(proc, case):
    """The result of ``case`` in a child run by :data:`RUN_CASES`; its error or the child's output fails the test."""
    for line in proc.stdout.splitlines():
        if line.startswith(f"RESULT {case} "):
            r = json.loads(line.split(" ", 2)[2])
            assert "error" not in r, r.get("error")
            return r
    raise AssertionError(f"{case}: no result line\n" + proc.stdout[-2000:] + proc.stderr[-4000:])

SAME_BATCHES = COMMON + """
def digests(ds, epochs):
    # iterate exactly as model.fit does: Keras' adapter, its OrderedEnqueuer and process pool
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter
    adapter, out = PyDatasetAdapter(ds, shuffle=False), []
    for _ in range(epochs):
        adapter.on_epoch_begin()
        for batch in adapter.get_numpy_iterator():  # (x, y, w) or (x, y)
            out.append(hashlib.sha1(b"".join(np.ascontiguousarray(a).tobytes() for a in batch)).hexdigest())
        adapter.on_epoch_end()
    return out

def loaded_frameworks():  # run in a data worker: the deep-learning packages it has imported
    import time
    time.sleep(0.2)  # the other worker takes the next request
    return [os.getpid(), sorted(m for m in sys.modules if m.split(".")[0] in {"keras", "tensorflow", "jax", "torch"})]

def same_batches():
    from tests.training.helpers import PidLoggingDataset, tiny_pose_model
    from training.trainer import fit
    log = sys.argv[1]
    serial = digests(make(PidLoggingDataset, 20, 0, False), 2)
    par_ds = make(PidLoggingDataset, 20, 2, True)
    par_ds.pid_log = log
    parallel = digests(par_ds, 2)
    pids, seen = {}, set()
    for line in open(log):
        pid, epoch, accelerators = line.split()
        pids.setdefault(epoch, []).append(int(pid))
        seen.add(accelerators)
    starts = par_ds._batch_workers.starts
    try:
        par_ds[len(par_ds)]
        out_of_range = "no error"
    except IndexError as e:
        out_of_range = str(e)
    par_ds.feed = "uint8"  # a changed setting restarts the processes with the new copy
    restart = [str(par_ds[0][0].dtype), par_ds._batch_workers.starts]
    par_ds.close_workers()
    keras_pool = digests(make(PidLoggingDataset, 20, 2, True, persistent_workers=False), 2)
    # batches over shared memory's 1 MiB threshold travel through the reused slots from the second batch on
    from training.data import SegmentationDataset
    from training.datasets.synthetic import synthetic_segmentation
    big = lambda workers: SegmentationDataset(synthetic_segmentation(12, image_size=(160, 160), num_classes=3), batch_size=4,
                                              input_size=(160, 160), num_classes=3, augment=True, seed=5, workers=workers,
                                              use_multiprocessing=workers > 0)
    big_par = big(2)
    big_same = digests(big(0), 2) == digests(big_par, 2)
    slots = [big_par._batch_workers._slots.size, len(big_par._batch_workers._slots._segments)]
    executor = big_par._batch_workers._executor
    frameworks = [f.result() for f in [executor.submit(loaded_frameworks) for _ in range(2)]]
    big_par.close_workers()
    fit_ds = make(PidLoggingDataset, 20, 2, True)
    res = fit(tiny_pose_model(outputs=2), fit_ds, epochs=2, verbose=0)
    return {"serial": serial, "parallel": parallel, "keras_pool": keras_pool, "main": os.getpid(),
            "pids": pids, "seen": sorted(seen), "starts": starts, "restart": restart, "out_of_range": out_of_range, "big_same": big_same, "slots": slots, "frameworks": frameworks, "fit_starts": fit_ds._batch_workers.starts,
            "fit_closed": not fit_ds._batch_workers.running,
            "method": multiprocessing.get_start_method(), "loss": res.history["loss"]}
"""


@agnostic
def test_spawn_workers_give_the_same_batches_as_workers_0_and_train(spawn_batches_and_crash):
    proc = spawn_batches_and_crash
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    r = case_result(proc, "same_batches")
    assert r["method"] == "spawn"
    assert len(r["serial"]) == 10 and r["parallel"] == r["serial"]  # 5 batches x 2 epochs, identical
    assert r["serial"][:5] != r["serial"][5:]  # the second epoch is reshuffled and re-augmented
    assert r["keras_pool"] == r["serial"]  # persistent_workers=False: Keras' own per-epoch pool
    first, second = set(r["pids"]["0"]), set(r["pids"]["1"])
    assert first and r["main"] not in first | second  # batches were made in worker processes
    # workers never see an accelerator (JAX's config too: the re-imported __main__ imported Keras' backend)
    assert r["seen"] in (["cpu,cpu,''"], ["cpu,no-jax,''"]), r["seen"]
    # the same 2 processes served both epochs (a slow-starting worker may make nothing in the first)
    assert len(first | second) <= 2 and r["starts"] == 1
    assert r["restart"] == ["uint8", 2]
    assert r["out_of_range"] == "batch index 5 out of range for 5 batches."
    assert r["big_same"] and r["slots"][0] >= 4 * 160 * 160 * 3 * 4 and r["slots"][1] >= 1  # 1.2 MiB float32 images
    # the workers of a built-in dataset, spawned by a __main__ that imports no Keras, make NumPy batches without
    # importing Keras or a backend (~5 CPU-s each under TensorFlow before their first batch)
    assert r["frameworks"] and all(pid != r["main"] and mods == [] for pid, mods in r["frameworks"]), r["frameworks"]
    assert r["fit_starts"] == 1 and r["fit_closed"]  # one start for the whole fit, closed at its end
    assert len(r["loss"]) == 2 and all(v == v for v in r["loss"])  # fit with spawned workers ran, no NaN


CRASH = """
def crash():  # one line per case (a fit that raised is the case's result); run last: its workers die
    from tests.training.helpers import CrashingDataset, tiny_pose_model
    from training.trainer import fit
    for case in ("worker-dies", "worker-dies-keras-pool", "missing-image"):
        ds = make(CrashingDataset, 24, 2, True, persistent_workers=case != "worker-dies-keras-pool")
        if case == "missing-image":
            ds.records[9] = ds.records[9].replace(image="/nonexistent/img_9.png", id="img9")
            ds.shuffle = False
            ds.crash_at = -1
        try:
            fit(tiny_pose_model(outputs=2), ds, epochs=2, verbose=0)
            print(case, "NO ERROR")
        except Exception as e:
            print(case, "RAISED " + type(e).__name__ + ": " + str(e)[:2000].replace(chr(10), " "))
"""


@pytest.fixture(scope="module")
def spawn_batches_and_crash(tmp_path_factory):
    """One spawn-method child for the batches and the crash tests (each case's result apart)."""
    folder = tmp_path_factory.mktemp("spawn")
    script = folder / "batches_and_crash.py"
    script.write_text(SAME_BATCHES + CRASH + RUN_CASES + """
if __name__ == "__main__":
    multiprocessing.set_start_method("spawn", force=True)
    run_cases(same_batches, crash)
""")
    return run_python([str(script), str(folder / "pids.log")], timeout=700)  # a hang hits the timeout and fails


@agnostic
def test_worker_failure_raises_in_main_process(spawn_batches_and_crash):
    """A worker process that dies, and one that raises, both end fit with an error (never a hang)."""
    proc = spawn_batches_and_crash
    lines = {ln.split(" ", 1)[0]: ln for ln in proc.stdout.splitlines() if " RAISED " in ln or "NO ERROR" in ln}
    dies, missing = lines.get("worker-dies", ""), lines.get("missing-image", "")
    for case in ("worker-dies", "worker-dies-keras-pool"):  # persistent processes, Keras' pool + watchdog
        dies = lines.get(case, "")
        assert "RAISED" in dies and "WorkerCrashedError" in dies and "data worker process" in dies \
            and " died " in dies, case + ": " + proc.stdout[-2000:] + proc.stderr[-3000:]
    if "UnknownError" not in lines["worker-dies"]:  # TensorFlow's tf.data wraps the message and elides its middle
        # the lost batches are those not finished when the worker died: batch 2 (the crash) among them;
        # batches 0-1 may or may not have been finished by then
        lost = re.search(r"data worker process of CrashingDataset died while batches ([\d, -]+) of epoch 0 were "
                         r"being made", lines["worker-dies"])
        spans = [tuple(map(int, part.split("-"))) for part in lost[1].split(", ")] if lost else []
        assert any(span[0] <= 2 <= span[-1] for span in spans), lines["worker-dies"]
    assert "sample 9 (id 'img9', image '/nonexistent/img_9.png')" in missing and "not found" in missing, missing


@agnostic
def test_lost_batches_are_named_as_ranges():
    from training.workers import _ranges

    assert _ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    assert _ranges([3]) == "3"


FORK = COMMON + """
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter
from training.data import HeatmapDataset

def digests(ds):
    adapter, out = PyDatasetAdapter(ds, shuffle=False), []
    for _ in range(2):
        adapter.on_epoch_begin()
        out += [hashlib.sha1(b"".join(np.ascontiguousarray(a).tobytes() for a in b)).hexdigest()
                for b in adapter.get_numpy_iterator()]
        adapter.on_epoch_end()
    return out

if __name__ == "__main__":
    multiprocessing.set_start_method("fork", force=True)  # Linux's default before Python 3.14
    big = lambda w: HeatmapDataset(__import__("training.datasets.synthetic", fromlist=["x"]).synthetic_pose(
        16, image_size=(96, 96), num_keypoints=16, seed=3), batch_size=8, input_size=(96, 96), heatmap_size=(48, 48),
        augment=True, seed=2, workers=w, use_multiprocessing=w > 0)  # 1.2 MiB of heatmaps: slots in use
    print("RESULT " + json.dumps({"same": digests(big(0)) == digests(big(2))}))
"""


@agnostic
def test_fork_workers_share_the_parents_resource_tracker(tmp_path):
    """Forked workers: same batches, and no tracker of their own unlinking the parent's segments at exit."""
    script = tmp_path / "fork.py"
    script.write_text(FORK)
    proc = run_python([str(script)], timeout=300)
    assert proc.returncode == 0 and '"same": true' in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "leaked shared_memory" not in proc.stderr and "No such file" not in proc.stderr, proc.stderr[-3000:]


FIT_ORDER = """import hashlib, json, multiprocessing, os, sys
import numpy as np

SEEN = {"train": [], "val": []}

def make(n, workers, mp, persistent=True, shuffle=True, augment=True):
    from training.data import HeatmapDataset
    from training.datasets.synthetic import synthetic_pose
    return HeatmapDataset(synthetic_pose(n, image_size=(32, 32), num_keypoints=4, seed=3), batch_size=4,
                          input_size=(32, 32), heatmap_size=(8, 8), sigma=1.0, augment=augment, flip_pairs=(), seed=11,
                          shuffle=shuffle, workers=workers, use_multiprocessing=mp, persistent_workers=persistent)

def digest(x):
    return hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest()[:10]

def model():
    # records the digest of every image batch the model steps on (jit_compile=False on JAX: concrete arrays)
    import jax
    import keras

    class Record(keras.layers.Layer):
        def call(self, x, training=None):
            if not isinstance(x, (keras.KerasTensor, jax.core.Tracer)):  # a concrete batch, not a trace
                SEEN["train" if training else "val"].append(digest(keras.ops.convert_to_numpy(x)))
            return x

    from tests.training.helpers import tiny_pose_model
    inner = tiny_pose_model(32, 4, outputs=2)
    inp = keras.Input((32, 32, 3), name="image")
    return keras.Model(inp, inner(Record()(inp)), name="recorded")

def expected(ds, epochs):
    out = []
    for e in range(epochs):
        ds.set_epoch(e)
        out += [digest(ds[i][0]) for i in range(len(ds))]
    return out

if __name__ == "__main__":
    multiprocessing.set_start_method("spawn", force=True)
    from training.trainer import fit
    result = {"train_ref": expected(make(18, 0, False), 2),
              "val_ref": expected(make(10, 0, False, shuffle=False, augment=False), 2)[:3]}
    for case, (workers, mp, persistent) in {"threads": (2, False, True), "keras-threads": (2, False, False),
                                            "keras-pool": (2, True, False), "persistent": (2, True, True)}.items():
        SEEN["train"].clear(), SEEN["val"].clear()
        train, val = make(18, workers, mp, persistent), make(10, workers, mp, persistent, shuffle=False, augment=False)
        fit(model(), train, val, epochs=2, verbose=0, jit_compile=False, checkpoint=False, backup=False)
        result[case] = {"train": list(SEEN["train"]), "val": list(SEEN["val"])}
    print("RESULT " + json.dumps(result))
"""


def test_fit_steps_on_the_batches_of_workers_0_with_threads_and_keras_pool(tmp_path):
    """What the model trains and validates on, batch by batch, equals dataset[i] of each epoch in order.

    Keras' enqueuer (its threads or per-epoch process pool: persistent_workers=False) kept the batches of the pass Keras
    peeks at to build the compile state and served them first: epoch 1 trained batches 1-4, 0 of epoch 0
    and epoch 2 batches 1-4 of epoch 0 again, then batch 0 of epoch 2. JAX with ``jit_compile=False``
    (whatever the suite's backend) so a layer can read each concrete batch.
    """
    script = tmp_path / "fit_order.py"
    script.write_text(FIT_ORDER)
    proc = run_python([str(script)], env={"KERAS_BACKEND": "jax"}, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    r = json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert len(set(r["train_ref"])) == 10  # 2 epochs x 5 batches (the last of 2 samples), all different
    for case in ("threads", "keras-threads", "keras-pool", "persistent"):
        assert r[case]["train"] == r["train_ref"], case
        assert r[case]["val"] == r["val_ref"] * 2, case  # validation: same 3 batches after each epoch


INTERRUPT = """import json, multiprocessing, os, signal, sys, time

""" + CHILDREN_SOURCE + """
def segments():
    return {n for n in os.listdir("/dev/shm") if n.startswith("psm_")}

def make(n, shuffle=True):
    from training.data import HeatmapDataset
    from training.datasets.synthetic import synthetic_pose
    # 48x48 heatmaps of 16 joints: 1.2 MiB per batch, so batches travel through shared-memory slots
    return HeatmapDataset(synthetic_pose(n, image_size=(96, 96), num_keypoints=16, seed=3), batch_size=8,
                          input_size=(96, 96), heatmap_size=(48, 48), sigma=1.0, augment=True, flip_pairs=(), seed=1,
                          shuffle=shuffle, workers=2, use_multiprocessing=True)

def interrupted_fit():
    import keras
    from tests.training.helpers import tiny_pose_model
    from training.trainer import fit

    before = segments()
    seen = {}

    class Interrupt(keras.callbacks.Callback):  # Ctrl-C in epoch 2, after validation started its workers
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == 1:
                seen["during"] = children()
                for pid in seen["during"]:  # a terminal's Ctrl-C reaches every process of the command
                    os.kill(pid, signal.SIGINT)
                time.sleep(0.5)  # their handlers have run (a traceback each, before workers ignored it)
                raise KeyboardInterrupt

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    train, val = make(40), make(16, shuffle=False)
    try:
        fit(tiny_pose_model(96, 16, outputs=2), train, val, epochs=3, verbose=0, callbacks=[Interrupt()])
        raised = "nothing"
    except KeyboardInterrupt:
        raised = "KeyboardInterrupt"
    # a late request, as TensorFlow's tf.data prefetch thread of the failed fit can make (seen under load): made
    # here, it started two new processes that nothing closed
    late = [train[1][0].shape, val[0][0].shape]
    deadline = time.time() + 30  # processes finish the batch in hand, then exit
    while children() and time.time() < deadline:
        time.sleep(0.2)
    after = children()
    train.on_epoch_begin()  # the next pass may start workers again
    train[0]
    again = len(children())
    train.close_workers()
    return {"raised": raised, "during": seen.get("during", []), "after": after,
            "segments": sorted(segments() - before), "late": [list(x) for x in late], "again": again}
"""


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """One spawn-method child for the Ctrl-C tests: the fit first (it counts the child processes), then the wait."""
    script = tmp_path_factory.mktemp("interrupt") / "interrupt.py"
    script.write_text(INTERRUPT + INTERRUPTED_WAIT + RUN_CASES + """
if __name__ == "__main__":
    multiprocessing.set_start_method("spawn", force=True)
    run_cases(interrupted_fit, interrupted_wait)
""")
    return run_python([str(script)], timeout=500)


@agnostic
def test_interrupted_fit_leaves_no_worker_processes_or_segments(interrupted):
    """Ctrl-C (or any exception) in fit stops the training and validation worker processes at once; a terminal's
    Ctrl-C, which reaches the workers too, printed a KeyboardInterrupt traceback from each of them."""
    assert interrupted.returncode == 0, interrupted.stdout[-2000:] + interrupted.stderr[-4000:]
    r = case_result(interrupted, "interrupted_fit")
    assert r["raised"] == "KeyboardInterrupt"
    assert len(r["during"]) == 4  # 2 training + 2 validation processes were running
    assert r["after"] == [] and r["segments"] == [], r  # they stayed alive as long as the datasets did
    assert r["late"] == [[8, 96, 96, 3], [8, 96, 96, 3]] and r["again"] == 2
    # the workers' SIGINT, as a terminal sends it to them too, is the parent's to act on: no traceback of theirs
    assert "KeyboardInterrupt" not in interrupted.stderr and "Traceback" not in interrupted.stderr, \
        interrupted.stderr[-4000:]


KILLED_PARENT = """
import multiprocessing, sys, time
from training.data import HeatmapDataset
from training.datasets.synthetic import synthetic_pose

if __name__ == "__main__":
    multiprocessing.set_start_method("spawn", force=True)
    ds = HeatmapDataset(synthetic_pose(16, image_size=(32, 32), num_keypoints=4, seed=3), batch_size=4,
                        input_size=(32, 32), heatmap_size=(8, 8), sigma=1.0, flip_pairs=(), workers=2,
                        use_multiprocessing=True)
    ds[0]
    print("WORKERS", *[p.pid for p in multiprocessing.active_children()], flush=True)
    time.sleep(300)
"""


@agnostic
@pytest.mark.tf_pass_only
def test_worker_processes_end_when_their_parent_is_killed(tmp_path):
    """A training process killed (SIGKILL: out of memory, a scheduler's time limit) left its data workers waiting
    on their task queue for ever, each with its copy of the dataset: the queue's write end is held by every worker,
    so it never reads an end of file."""
    import signal
    import time

    script = tmp_path / "killed.py"
    script.write_text(KILLED_PARENT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=ROOT)
    try:
        line = parent.stdout.readline()
        assert line.startswith("WORKERS "), line + parent.stderr.read()[-3000:]
        workers = [int(p) for p in line.split()[1:]]
        assert len(workers) == 2
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=60)

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
        except OSError:
            return False

    deadline = time.monotonic() + 30
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in workers if alive(pid)]
    for pid in left:  # not to leave them to the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert not left, f"data workers {left} outlived their killed parent"


CLOSED_MID_BATCH = """
import json, multiprocessing, sys, time
from training.data import HeatmapDataset
from training.datasets.synthetic import synthetic_pose


class Slow(HeatmapDataset):  # every batch after the first takes 60 s in a worker
    def __getitem__(self, idx):
        if self.processes == 0 and idx >= 1:
            time.sleep(60)
        return super().__getitem__(idx)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn", force=True)
    ds = Slow(synthetic_pose(32, image_size=(32, 32), num_keypoints=4, seed=3), batch_size=4, input_size=(32, 32),
              heatmap_size=(8, 8), sigma=1.0, flip_pairs=(), workers=2, use_multiprocessing=True)
    ds[0]  # the workers now make batches 1, 2, ... ahead
    workers = [p.pid for p in multiprocessing.active_children()]
    time.sleep(0.5)
    t = time.time()
    ds.close_workers()
    while any(map(alive, workers)) and time.time() - t < 20:
        time.sleep(0.05)
    print("RESULT " + json.dumps({"workers": len(workers), "seconds": time.time() - t,
                                  "left": [p for p in workers if alive(p)]}), flush=True)
"""


@agnostic
def test_closing_the_workers_ends_them_at_once_even_mid_batch(tmp_path):
    """close_workers (fit's end, a Ctrl-C) drops the pending batches; workers were left to finish the batch in hand,
    and one that stayed blocked there kept Python's exit waiting for ever (it joins its children: seen after Ctrl-C
    under TensorFlow)."""
    script = tmp_path / "closed.py"
    script.write_text(CLOSED_MID_BATCH)
    proc = run_python([str(script)], timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    r = json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert r["workers"] == 2 and r["left"] == [] and r["seconds"] < 5, r


HALF_WRITTEN_RESULT = """
import gc, multiprocessing, os, struct, sys, time
from multiprocessing.queues import SimpleQueue
from training.data import HeatmapDataset
from training.datasets.synthetic import synthetic_pose


class HalfWriter:  # writes the length and half of a message, then stops: a worker ended at that moment
    def __init__(self, conn):
        self.conn = conn

    def send_bytes(self, buf):
        data = bytes(buf)
        os.write(self.conn.fileno(), struct.pack("!i", len(data)) + data[:len(data) // 2])
        time.sleep(600)


class HalfWrittenBatch1(HeatmapDataset):
    def __getitem__(self, idx):
        if self.processes == 0 and idx == 1:  # in the worker: its result for batch 1 reaches the pipe half-written
            for q in gc.get_objects():
                if isinstance(q, SimpleQueue):  # the pool's result queue
                    q._writer = HalfWriter(q._writer)
        return super().__getitem__(idx)


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1], force=True)
    ds = HalfWrittenBatch1(synthetic_pose(32, image_size=(32, 32), num_keypoints=4, seed=3), batch_size=4,
                           input_size=(32, 32), heatmap_size=(8, 8), sigma=1.0, flip_pairs=(), workers=1,
                           use_multiprocessing=True)
    ds[0]  # the worker goes on with batch 1 and stops inside its result
    time.sleep(3)
    ds.close_workers()
    print("CLOSED", flush=True)
"""


@agnostic
@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_a_worker_ended_while_writing_its_result_does_not_hang_the_exit(tmp_path, start_method):
    """Closing the workers ends them at once; one ended while it wrote a result left half a message in the pool's
    result pipe, and the pool's manager thread, which Python's exit joins, waited for the rest for ever (CI, JAX:
    the Ctrl-C test's child hung after its last line)."""
    script = tmp_path / "half.py"
    script.write_text(HALF_WRITTEN_RESULT)
    try:
        proc = run_python([str(script), start_method], timeout=60)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"the process did not exit after closing its workers: {e.stdout!r}") from None
    assert proc.returncode == 0 and "CLOSED" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]


NOTEBOOK_CLASS = """
import multiprocessing
multiprocessing.set_start_method("spawn", force=True)
from training.data import HeatmapDataset
from training.datasets.synthetic import synthetic_pose

class NotebookDataset(HeatmapDataset):  # as in a notebook: not importable by a spawned process
    pass

ds = NotebookDataset(synthetic_pose(16, image_size=(32, 32), num_keypoints=4, seed=3), batch_size=4,
                     input_size=(32, 32), heatmap_size=(8, 8), sigma=1.0, flip_pairs=(), workers=2,
                     use_multiprocessing=True)
try:
    ds[0]
    print("NO ERROR")
except Exception as e:
    print("RAISED " + type(e).__name__ + ": " + str(e).replace(chr(10), " "))
ds.close_workers()
"""


@agnostic
@pytest.mark.jax_pass_only
def test_a_dataset_class_workers_cannot_import_is_named_not_reported_as_a_crash():
    proc = run_python(NOTEBOOK_CLASS, timeout=200)  # python -c: __main__ has no file to import
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(("RAISED", "NO ERROR"))), "")
    assert line.startswith("RAISED RuntimeError: a data worker process could not load its copy of NotebookDataset: "
                           "AttributeError: Can't get attribute 'NotebookDataset'"), \
        proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "start method 'spawn'" in line and "importable .py file" in line


@agnostic
def test_an_attribute_that_does_not_pickle_is_named_before_any_process_starts():
    import threading

    from training.data import HeatmapDataset
    from training.datasets.synthetic import synthetic_pose

    ds = HeatmapDataset(synthetic_pose(8, image_size=(32, 32), num_keypoints=4), batch_size=4, input_size=(32, 32),
                        heatmap_size=(8, 8), sigma=1.0, flip_pairs=(), workers=2, use_multiprocessing=True)
    ds.lock = threading.Lock()
    with pytest.raises(TypeError, match=r"HeatmapDataset with use_multiprocessing=True .* attribute\(s\) 'lock' "
                                        r"cannot be pickled: TypeError: cannot pickle '_thread.lock' object"):
        ds[0]
    assert not ds._batch_workers.running


INTERRUPTED_WAIT = """
import signal
from training.data import HeatmapDataset


class SlowBatch5(HeatmapDataset):
    # batch 5 takes 3 s in the worker process
    def __getitem__(self, idx):
        if self.processes == 0 and idx == 5:
            time.sleep(3)
        return super().__getitem__(idx)


def interrupt(*_):
    raise KeyboardInterrupt


def interrupted_wait():
    from training.datasets.synthetic import synthetic_pose
    # 1.2 MiB of heatmaps per batch: from the second batch on they travel through reused slots
    ds = SlowBatch5(synthetic_pose(48, image_size=(96, 96), num_keypoints=16, seed=3), batch_size=8,
                    input_size=(96, 96), heatmap_size=(48, 48), sigma=1.0, flip_pairs=(), workers=2,
                    use_multiprocessing=True, max_queue_size=3)
    for i in range(5):
        ds[i]
    workers = ds._batch_workers
    fut, slot = workers._pending[5]
    signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)  # Ctrl-C while waiting for batch 5
    try:
        ds[5]
        raised = "nothing"
    except KeyboardInterrupt:
        raised = "KeyboardInterrupt"
    state = {"raised": raised, "slot": slot is not None, "running": fut.running(),
             "free_while_written": slot in workers._slots._free}
    fut.result(timeout=30)
    time.sleep(0.2)
    state["free_after"] = slot in workers._slots._free
    ds.close_workers()
    return state
"""


@agnostic
def test_a_slot_is_lent_again_only_after_its_interrupted_batch_is_written(interrupted):
    """Ctrl-C while waiting for a batch gave its shared-memory slot back while the worker still wrote into
    it; lent to the next request, two batches would share one segment (dataset used again after the Ctrl-C)."""
    assert interrupted.returncode == 0, interrupted.stdout[-2000:] + interrupted.stderr[-3000:]
    r = case_result(interrupted, "interrupted_wait")
    assert r["raised"] == "KeyboardInterrupt" and r["slot"] and r["running"]
    assert not r["free_while_written"] and r["free_after"]


@agnostic
def test_thread_workers_feed_model_fit_the_batches_of_workers_0():
    """model.fit itself (not training.fit) with workers=2 threads steps on the batches of workers=0, in order.

    Keras' thread enqueuer served the batches left from the pass model.fit peeks at first (epoch 1: batches
    1-4, 0; epoch 2: 1-4 of epoch 1 again, then 0); the dataset's own thread pool has no such queue.
    """
    import hashlib

    import keras
    import numpy as np

    from training.data import EpochSync, HeatmapDataset
    from training.datasets.synthetic import synthetic_pose
    from training.losses import HeatmapMSE

    seen = []

    class Record(keras.layers.Layer):  # the digest of every concrete image batch the model steps on
        def call(self, x):
            try:
                a = np.ascontiguousarray(keras.ops.convert_to_numpy(x))
            except Exception:  # noqa: BLE001  (symbolic while the model is built or traced)
                return x
            seen.append(hashlib.sha1(a.tobytes()).hexdigest())
            return x

    def run(workers):
        ds = HeatmapDataset(synthetic_pose(18, image_size=(32, 32), num_keypoints=4, seed=3), batch_size=4,
                            input_size=(32, 32), heatmap_size=(8, 8), sigma=1.0, augment=True, flip_pairs=(), seed=11,
                            workers=workers)
        inp = keras.Input((32, 32, 3))
        model = keras.Model(inp, keras.layers.Conv2D(4, 3, strides=4, padding="same")(Record()(inp)))
        model.compile("sgd", HeatmapMSE(), run_eagerly=True)
        seen.clear()
        model.fit(ds, epochs=2, shuffle=False, verbose=0, callbacks=[EpochSync(ds)])
        return list(seen)

    serial = run(0)
    assert len(serial) == 10 and len(set(serial)) == 10  # 2 epochs x 5 batches (the last of 2 samples)
    assert run(2) == serial
