"""Stream the blobs out of a binary caffemodel (``NetParameter``, BVLC numbering), one layer at a time.

The top level of the file is walked by hand (a key varint, then a length-delimited layer); each layer is
parsed with protobuf (``schema.BVLC.*BlobsView``: name, type, blobs) and dropped as soon as its blobs are
numpy arrays, so peak memory stays near one copy of the weights plus the largest layer.
"""

from __future__ import annotations

import os

import numpy as np
from google.protobuf.message import DecodeError

from converters.caffe.errors import CaffeFormatError
from converters.caffe.schema import BVLC

__all__ = ["read_caffemodel", "read_caffemodel_file", "PROGRESS_MIN_BYTES"]

PROGRESS_MIN_BYTES = 50 * 2**20  # progress=None shows a bar from this file size on
_V2_LAYER, _V1_LAYERS = 100, 2  # NetParameter.layer, NetParameter.layers


class _Stream:
    """Byte reader with an offset, raising CaffeFormatError at a premature end."""

    def __init__(self, f, path, size):
        self.f, self.path, self.size, self.pos = f, path, size, 0

    def read(self, n, what):
        data = self.f.read(n)
        if len(data) != n:
            raise CaffeFormatError(
                f"caffemodel '{self.path}' is truncated or corrupt: {what} at byte {self.pos} needs {n} bytes, "
                f"only {len(data)} left")
        self.pos += n
        return data

    def varint(self, what, eof_ok=False):
        value, shift = 0, 0
        while True:
            b = self.f.read(1)
            if not b:
                if eof_ok and shift == 0:
                    return None
                raise CaffeFormatError(
                    f"caffemodel '{self.path}' is truncated or corrupt: {what} cut off at byte {self.pos}")
            self.pos += 1
            value |= (b[0] & 0x7F) << shift
            if not b[0] & 0x80:
                return value
            shift += 7
            if shift >= 70:
                raise CaffeFormatError(f"caffemodel '{self.path}' is corrupt: bad varint at byte {self.pos}")


def _blob(blob):
    """(shape as stored, float32 flat array) of one BlobProto; ``double_data`` is cast to float32."""
    if blob.HasField("num") or blob.HasField("channels") or blob.HasField("height") or blob.HasField("width"):
        shape = (int(blob.num), int(blob.channels), int(blob.height), int(blob.width))  # legacy 4-D
    else:
        shape = tuple(int(d) for d in blob.shape.dim)
    if len(blob.double_data):
        return shape, np.asarray(blob.double_data, dtype=np.float64).astype(np.float32)
    return shape, np.asarray(blob.data, dtype=np.float32)  # upb: one bulk copy of the packed array


def _parse_layer(data, field, stream, index, start):
    try:
        if field == _V2_LAYER:
            view = BVLC.LayerBlobsView.FromString(data)
            name, blobs = view.name, view.blobs
        else:
            view = BVLC.V1LayerBlobsView.FromString(data)
            name = view.name or view.layer.name
            blobs = view.blobs if len(view.blobs) else view.layer.blobs
        return name, [_blob(b) for b in blobs]
    except (DecodeError, RuntimeError, ValueError) as e:
        raise CaffeFormatError(
            f"caffemodel '{stream.path}' is corrupt: layer #{index} at byte {start} does not parse ({e})") from None


def read_caffemodel(f, path, size, progress=None):
    """Blobs of every layer of an open binary caffemodel.

    Args:
        f: binary file object positioned at the start.
        path: name for messages.
        size: total bytes (for the progress bar).
        progress: True/False, or None for a bar only from ``PROGRESS_MIN_BYTES`` on.

    Returns:
        list of ``(layer_name, [(shape, float32 flat array), ...])`` in file order; ``shape`` as stored
        (``shape.dim`` or the legacy num/channels/height/width).

    Raises:
        CaffeFormatError: truncated or corrupt file.
    """
    from tqdm.auto import tqdm

    show = size >= PROGRESS_MIN_BYTES if progress is None else bool(progress)
    stream, layers = _Stream(f, path, size), []
    with tqdm(total=size, unit="B", unit_scale=True, desc=f"reading {os.path.basename(str(path))}",
              disable=not show, leave=False) as bar:
        while True:
            start = stream.pos
            key = stream.varint("field key", eof_ok=True)
            if key is None:
                break
            field, wire = key >> 3, key & 7
            if field == 0:
                raise CaffeFormatError(f"caffemodel '{path}' is corrupt: field number 0 at byte {start} "
                                       "(not a binary NetParameter?)")
            if wire == 2:
                n = stream.varint("length")
                if n > size - stream.pos:
                    raise CaffeFormatError(
                        f"caffemodel '{path}' is truncated or corrupt: field {field} at byte {start} needs {n} "
                        f"bytes, only {size - stream.pos} left")
                data = stream.read(n, f"field {field}")
                if field in (_V2_LAYER, _V1_LAYERS):
                    layers.append(_parse_layer(data, field, stream, len(layers), start))
                del data
            elif wire == 0:
                stream.varint(f"field {field}")
            elif wire in (1, 5):
                stream.read(8 if wire == 1 else 4, f"field {field}")
            else:
                raise CaffeFormatError(f"caffemodel '{path}' is corrupt: wire type {wire} of field {field} at byte "
                                       f"{start} (not a binary NetParameter?)")
            bar.update(stream.pos - start)
    return layers


def read_caffemodel_file(path, progress=None):
    """:func:`read_caffemodel` on a path; unreadable paths raise CaffeFormatError naming the path."""
    try:
        f = open(path, "rb")
    except (OSError, TypeError, ValueError) as e:
        raise CaffeFormatError(f"cannot read caffemodel '{path}': {getattr(e, 'strerror', None) or e}") from None
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
        except OSError as e:
            raise CaffeFormatError(f"cannot read caffemodel '{path}': {e.strerror}") from None
        if size == 0:
            raise CaffeFormatError(f"caffemodel '{path}' is empty")
        return read_caffemodel(f, path, size, progress=progress)
