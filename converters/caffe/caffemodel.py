"""Stream the blobs out of a binary caffemodel (``NetParameter``, BVLC numbering), one layer at a time.

The top level of the file is walked by hand (a key varint, then a length-delimited layer). A V2 or V1 layer
in the form Caffe writes (name, blobs of ``shape`` or legacy dims and one packed float ``data``) is walked
by hand too, and its blobs are numpy views of the bytes read from the file: no copy into protobuf's
arena and none out of it (VGG-16's fc6 alone is 411 MB). Any other form (nested V0 layers, ``double_data``,
unpacked or chunked floats, odd wire types, anything corrupt) is parsed by protobuf
(``schema.BVLC.*BlobsView``), which also words the errors.
"""

from __future__ import annotations

import io
import os
import stat

import numpy as np
from google.protobuf.message import DecodeError

from converters.caffe.errors import CaffeFormatError
from converters.caffe.schema import BVLC

__all__ = ["read_caffemodel", "read_caffemodel_file", "PROGRESS_MIN_BYTES"]

PROGRESS_MIN_BYTES = 50 * 2**20  # progress=None shows a bar from this file size on


def _stderr_is_terminal() -> bool:
    import sys

    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced stream without isatty, or a closed one
        return False
_V2_LAYER, _V1_LAYERS = 100, 2  # NetParameter.layer, NetParameter.layers


class _Stream:
    """Byte reader with an offset, raising CaffeFormatError at a premature end."""

    def __init__(self, f, path, size):
        self.f, self.path, self.size, self.pos = f, path, size, 0

    def read(self, n, what):
        """``n`` bytes as a writable memoryview (blob arrays are views of it).

        Read into ``np.empty``: ``bytearray(n)`` zero-fills every byte before the read overwrites it
        (a ResNet-152's 230 MB: 20-30 ms).
        """
        data = memoryview(np.empty(n, np.uint8))
        got = self.f.readinto(data)
        if got != n:
            data = data[:got or 0]
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


class _NotPlain(Exception):
    """The layer is not in the plain form :func:`_plain_layer` reads: protobuf parses it instead."""


def _varint_at(buf, pos, end):
    value, shift = 0, 0
    while pos < end and shift < 64:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
    raise _NotPlain


def _fields(buf, pos, end):
    """``(field, wire, value, stop)`` of each field in ``buf[pos:end]``: a varint's value, or the
    ``[value, stop)`` byte range of a length-delimited field (fixed-width fields are skipped)."""
    while pos < end:
        key, pos = _varint_at(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0 or key >= 1 << 32:  # protobuf rejects both
            raise _NotPlain
        if wire == 0:
            value, pos = _varint_at(buf, pos, end)
            yield field, wire, value, pos
        elif wire == 2:
            n, pos = _varint_at(buf, pos, end)
            if n > end - pos:
                raise _NotPlain
            yield field, wire, pos, pos + n
            pos += n
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > end:
                raise _NotPlain
            yield field, wire, None, pos
        else:  # groups
            raise _NotPlain


def _int32(v):
    v &= 0xFFFFFFFF  # protobuf's int32 from a varint: the low 32 bits, signed
    return v - (1 << 32) if v >= 1 << 31 else v


def _plain_blob(buf, pos, end):
    legacy, shape, data = {}, None, None
    for field, wire, value, stop in _fields(buf, pos, end):
        if 1 <= field <= 4:  # num, channels, height, width
            if wire != 0:
                raise _NotPlain
            legacy[field] = _int32(value)
        elif field == 7:  # shape
            if wire != 2 or shape is not None:
                raise _NotPlain
            try:
                shape = tuple(int(d) for d in BVLC.BlobShape.FromString(bytes(buf[value:stop])).dim)
            except DecodeError:
                raise _NotPlain from None
        elif field == 5:  # data: exactly one packed run
            if wire != 2 or data is not None or (stop - value) % 4:
                raise _NotPlain
            data = (value, stop)
        elif field in (6, 8, 9):  # diff, double_data, double_diff: protobuf checks and reads them
            raise _NotPlain
    if legacy:
        shape = tuple(legacy.get(f, 0) for f in (1, 2, 3, 4))
    elif shape is None:
        shape = ()
    if data is None:
        return shape, np.zeros(0, np.float32)
    return shape, np.frombuffer(buf, "<f4", (data[1] - data[0]) // 4, data[0])


_PLAIN_FIELDS = {_V2_LAYER: (1, 7), _V1_LAYERS: (4, 6)}  # (name, blobs) of LayerParameter, V1LayerParameter


def _plain_layer(buf, kind):
    """(name, blobs) of a V2 ``LayerParameter`` or V1 ``V1LayerParameter`` in Caffe's plain form, blobs
    viewing ``buf``."""
    name_field, blobs_field = _PLAIN_FIELDS[kind]
    name, blobs = b"", []
    for field, wire, value, stop in _fields(buf, 0, len(buf)):
        if field == name_field:
            if wire != 2:
                raise _NotPlain
            name = bytes(buf[value:stop])
        elif field == blobs_field:
            if wire != 2:
                raise _NotPlain
            blobs.append(_plain_blob(buf, value, stop))
        elif kind == _V1_LAYERS and field == 1:  # a nested V0 layer: protobuf resolves which name and blobs
            raise _NotPlain
    try:
        return name.decode("utf-8"), blobs
    except UnicodeDecodeError:
        raise _NotPlain from None


def _parse_layer(data, field, stream, index, start):
    try:
        return _plain_layer(data, field)
    except _NotPlain:
        pass
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
        progress: True/False, or None for a bar only from ``PROGRESS_MIN_BYTES`` on, on a terminal.

    Returns:
        list of ``(layer_name, [(shape, float32 flat array), ...])`` in file order; ``shape`` as stored
        (``shape.dim`` or the legacy num/channels/height/width).

    Raises:
        CaffeFormatError: truncated or corrupt file.
    """
    from tqdm.auto import tqdm

    # None: a large file, and a terminal to draw in (a log got the bar's carriage-return frames)
    show = size >= PROGRESS_MIN_BYTES and _stderr_is_terminal() if progress is None else bool(progress)
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
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):  # a pipe (the shell's <(...)), a FIFO: its size is 0 until read whole
                data = f.read()
                if not data:
                    raise CaffeFormatError(f"caffemodel '{path}' is empty (a pipe or FIFO that gave no bytes)")
                return read_caffemodel(io.BytesIO(data), path, len(data), progress=progress)
        except OSError as e:
            raise CaffeFormatError(f"cannot read caffemodel '{path}': {e.strerror}") from None
        if st.st_size == 0:
            raise CaffeFormatError(f"caffemodel '{path}' is empty")
        return read_caffemodel(f, path, st.st_size, progress=progress)
