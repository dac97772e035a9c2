"""A Ctrl-C that reached ``fit`` but was lost is delivered again while training goes on.

Python turns SIGINT into a KeyboardInterrupt raised wherever the main thread runs Python code next. Code that
swallows it -- a garbage-collector callback, whose exception Python prints as "Exception ignored" and drops (JAX runs
some), or a C extension that clears any error while it looks an attribute up -- leaves training running as if the
key was never pressed: on JAX with data workers most Ctrl-Cs land in the host's wait for a step (``np.array`` of its
logs) and are lost there, ``kerazoo train`` then stopping 5-37 s later, once not within a minute. While ``fit``
runs, :func:`redeliver_ctrl_c` remembers the press, and when a training or validation step completes after it, raises
it again at that step's end from a callback on the main thread: plain Python code, where nothing drops it. Where
Keras runs the callbacks off the main thread, a watcher raises it again in the main thread
(``_thread.interrupt_main``) every ``every`` seconds until ``fit`` has ended. A KeyboardInterrupt that did end
``fit`` is never repeated: no step completes after it, so the clean-up (stopping the data workers, writing nothing
half-done) runs undisturbed.
"""

from __future__ import annotations

import contextlib
import signal
import threading

import keras

__all__ = ["redeliver_ctrl_c"]


class _Steps(keras.callbacks.Callback):
    """Counts completed training and validation steps (async-safe: the host waits for no step); a step that ends
    after a Ctrl-C whose KeyboardInterrupt was lost raises it, on the main thread."""

    async_safe = True

    def __init__(self):
        super().__init__()
        self.count = 0
        self.pressed = False

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1
        if self.pressed and threading.current_thread() is threading.main_thread():
            self.pressed = False  # once: the KeyboardInterrupt now ends fit
            raise KeyboardInterrupt

    on_test_batch_end = on_train_batch_end


@contextlib.contextmanager
def redeliver_ctrl_c(every: float = 2.0):
    """While the block runs: a Ctrl-C after which steps still complete is raised again every ``every`` seconds.

    Yields a Keras callback to pass to ``model.fit`` (it counts the steps), or ``None`` where nothing is done: not
    in the main thread, or SIGINT not at Python's default handler (a caller's own handler, or ignored as in a
    background job).
    """
    import _thread

    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield None
        return
    steps, done = _Steps(), threading.Event()
    pressed = []  # the step count at the first press

    def watch():
        while not done.wait(every):
            if steps.count > pressed[0]:  # training went on after the press: its KeyboardInterrupt was lost
                pressed[0] = steps.count
                _thread.interrupt_main(signal.SIGINT)

    def handler(signum, frame):
        if not pressed:
            pressed.append(steps.count)
            threading.Thread(target=watch, name="kerazoo-ctrl-c", daemon=True).start()
        steps.pressed = True  # the next step end raises it, should this one be lost
        signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield steps
    finally:
        done.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
