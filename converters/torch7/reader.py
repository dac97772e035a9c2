"""Reader of Torch7 binary serialization (``torch.save(path, obj)``, the ``.t7`` format), without Lua.

Format (``torch7/File.lua`` ``writeObject``; ``generic/Tensor.c`` and ``generic/Storage.c`` ``write``),
all little-endian, ints 4 bytes, longs 8 bytes:

- an object is an int type tag: 0 nil, 1 number (float64), 2 string (int length + bytes),
  3 table, 4 torch object, 5 boolean (int), 6 function, 7/8 recursive function;
- tables, torch objects and recursive functions then carry an int reference index: an index seen
  before means "the same object again" (shared references and cycles), else the object follows;
- a table is an int pair count then that many (key object, value object) pairs;
- a torch object is a string ``"V <version>"`` and a string class name (files older than the
  versioning have the class name only), then its payload: tensors ``int ndim, long sizes[ndim],
  long strides[ndim], long storageOffset (1-based)`` and the storage object; storages ``long size``
  and the raw elements; any other class (nn modules, nngraph nodes) one object, the table of its fields;
- a function is the Lua bytecode (int length + bytes) and an object of upvalues (kept opaque here).

Tensors come back as NumPy arrays viewing the file's bytes (no copy, read-only): strides and offset
are honoured and tensors sharing a storage share memory.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

from converters.torch7.errors import Torch7FormatError

__all__ = ["load", "loads", "named_tensors", "LuaTable", "TorchObject", "LuaFunction", "TENSOR_DTYPES"]

TYPE_NIL, TYPE_NUMBER, TYPE_STRING, TYPE_TABLE, TYPE_TORCH, TYPE_BOOLEAN = 0, 1, 2, 3, 4, 5
TYPE_FUNCTION, TYPE_LEGACY_RECUR_FUNCTION, TYPE_RECUR_FUNCTION = 6, 7, 8
_TYPE_NAMES = {0: "nil", 1: "number", 2: "string", 3: "table", 4: "torch object", 5: "boolean",
               6: "function", 7: "function", 8: "function"}

#: ``torch.<Prefix>Tensor`` / ``torch.<Prefix>Storage`` -> element dtype. cutorch writes Cuda
#: storages through host memory in their own element type (CudaTensor = float32).
TENSOR_DTYPES = {
    "Double": "<f8", "Float": "<f4", "Half": "<f2", "Long": "<i8", "Int": "<i4", "Short": "<i2",
    "Char": "i1", "Byte": "u1", "Cuda": "<f4", "CudaDouble": "<f8", "CudaHalf": "<f2",
    "CudaLong": "<i8", "CudaInt": "<i4", "CudaShort": "<i2", "CudaChar": "i1", "CudaByte": "u1",
}
_TENSOR_CLASS = re.compile(r"torch\.(\w*?)(Tensor|Storage)")  # fullmatch: '$' would pass a trailing newline
_MAX_NDIM = 64  # torch7 tensors have at most a handful of dims; more means garbage
_MAX_ELEMENTS = 2**40  # a view larger than this (stride-0 expansions included) means garbage
_MAX_EXPANDED = 2**24  # a view may show more elements than its storage holds (stride 0) up to this many


class LuaTable:
    """A Lua table: keys may be strings, numbers, booleans, tables or torch objects.

    Numbers that are whole are stored as ``int`` (Lua keeps all numbers as doubles), so
    ``t[1]`` finds the key ``1.0``. Table and torch-object keys match by identity.
    """

    __slots__ = ("_items",)

    def __init__(self, items=None):
        self._items = {}
        for k, v in (items.items() if isinstance(items, dict) else items or ()):
            self[k] = v

    @staticmethod
    def _key(key):
        if isinstance(key, bool):  # Lua's true/false are not the numbers 1/0 (Python's True == 1 is)
            return _TRUE if key else _FALSE
        if isinstance(key, float) and key.is_integer():
            return int(key)
        return key

    @staticmethod
    def _unkey(key):
        return key is _TRUE if key is _TRUE or key is _FALSE else key

    def __getitem__(self, key):
        return self._items[self._key(key)]

    def __setitem__(self, key, value):
        self._items[self._key(key)] = value

    def __contains__(self, key):
        try:
            return self._key(key) in self._items
        except TypeError:  # unhashable probe
            return False

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return iter(self.keys())

    def get(self, key, default=None):
        return self._items.get(self._key(key), default)

    def keys(self):
        return [self._unkey(k) for k in self._items]

    def values(self):
        return self._items.values()

    def items(self):
        return [(self._unkey(k), v) for k, v in self._items.items()]

    def list(self) -> list:
        """The array part ``t[1], t[2], ...`` up to the first missing index (Lua's ``ipairs``)."""
        out = []
        while len(out) + 1 in self._items:
            out.append(self._items[len(out) + 1])
        return out

    def __repr__(self):
        n = len(self.list())
        return f"LuaTable({len(self._items)} entries, {n} in the array part)"


class _BoolKey:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"<Lua {str(self.value).lower()}>"


_TRUE, _FALSE = _BoolKey(True), _BoolKey(False)


class TorchObject:
    """An instance of a torch class other than tensors/storages (``nn.SpatialConvolution``,
    ``nngraph.Node``...): ``class_name``, ``version`` and its ``fields`` (a :class:`LuaTable`).

    ``obj["weight"]`` and ``obj.get("bias")`` read fields.
    """

    __slots__ = ("class_name", "version", "fields")

    def __init__(self, class_name: str, fields=None, version: int = 0):
        self.class_name = class_name
        self.version = version
        self.fields = fields if fields is not None else LuaTable()

    def __getitem__(self, key):
        return self.fields[key]

    def __contains__(self, key):
        return isinstance(self.fields, LuaTable) and key in self.fields

    def get(self, key, default=None):
        return self.fields.get(key, default) if isinstance(self.fields, LuaTable) else default

    def __repr__(self):
        return f"TorchObject({self.class_name!r})"


class LuaFunction:
    """A serialized Lua function, kept opaque: its bytecode and its upvalues object."""

    __slots__ = ("bytecode", "upvalues")

    def __init__(self, bytecode: bytes, upvalues=None):
        self.bytecode = bytecode
        self.upvalues = upvalues

    def __repr__(self):
        return f"LuaFunction({len(self.bytecode)} bytes of bytecode)"


def load(path):
    """Read the ``.t7`` file at ``path`` (binary mode, as ``torch.save`` writes by default).

    Raises:
        Torch7FormatError: missing/unreadable file, ascii mode, truncated or corrupt data (the
            message names the file, the byte offset and what was expected there).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise Torch7FormatError(f"cannot read Torch7 file '{path}': {e.strerror or e}") from None
    return loads(data, source=str(path))


def loads(data, source: str = "<bytes>"):
    """Deserialize one object from ``data`` (bytes-like). ``source`` names it in error messages."""
    return _Reader(data, source).read()


def named_tensors(obj):
    """Yield ``(dotted path, array, owner class)`` for every non-empty tensor/storage under ``obj``.

    Paths follow string and integer keys (``modules.3.weight``; a ``gModule``'s ``modules`` list is
    walked first, so its tensors are named through it rather than through the graph nodes); each
    array is listed once, under the first path that reaches it. Iterative, so any depth works.
    """
    seen = {id(obj)}
    stack = [("", obj, "")]
    while stack:
        path, value, owner = stack.pop()
        if isinstance(value, np.ndarray):
            if value.size:
                yield path, value, owner
            continue
        fields, owner = (value.fields, value.class_name) if isinstance(value, TorchObject) else (value, owner)
        if not isinstance(fields, LuaTable):
            continue
        keys = [k for k in fields.keys() if isinstance(k, (str, int)) and not isinstance(k, bool)]
        keys.sort(key=lambda k: (0, k, "") if isinstance(k, int) else (1, 0, "") if k == "modules" else (2, 0, k))
        children = []
        for k in keys:
            child = fields[k]
            if isinstance(child, (np.ndarray, LuaTable, TorchObject)) and id(child) not in seen:
                seen.add(id(child))
                children.append((f"{path}.{k}" if path else str(k), child, owner))
        stack.extend(reversed(children))


class _Frame:
    """An object whose children are being read (iterative parsing: no recursion limit)."""

    __slots__ = ("kind", "target", "remaining", "key", "has_key", "extra")

    def __init__(self, kind, target, remaining=0, extra=None):
        self.kind, self.target, self.remaining, self.extra = kind, target, remaining, extra
        self.key, self.has_key = None, False


class _Reader:
    def __init__(self, data, source):
        self.buf = memoryview(data).cast("B")
        self.pos = 0
        self.source = source
        self.objects = {}  # reference index -> object
        self.class_of = {}  # id(array read) -> torch class name (storages and tensors are both arrays)

    # ------------------------------------------------------------------------------- primitives
    def fail(self, expected, at=None):
        at = self.pos if at is None else at
        raise Torch7FormatError(f"Torch7 file '{self.source}', byte {at}: expected {expected}")

    def need(self, n, what):
        if n < 0 or self.pos + n > len(self.buf):
            left = len(self.buf) - self.pos
            self.fail(f"{what} ({n} bytes), but the file is truncated ({left} bytes left of {len(self.buf)})")

    def int(self, what):
        self.need(4, what)
        (v,) = struct.unpack_from("<i", self.buf, self.pos)
        self.pos += 4
        return v

    def long(self, what):
        self.need(8, what)
        (v,) = struct.unpack_from("<q", self.buf, self.pos)
        self.pos += 8
        return v

    def raw(self, n, what):
        if n < 0:
            self.fail(f"{what}: a length >= 0, found {n}", self.pos - 4)
        self.need(n, what)
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def string(self, what):
        n = self.int(f"length of {what}")
        return self.raw(n, what).decode("latin-1")

    # ------------------------------------------------------------------------------- objects
    def read(self):
        if len(self.buf) >= 2 and self.buf[0] in b"0123456789" and self.buf[1] in b"\n ":
            self.fail("a binary-mode Torch7 file (this looks like torch.save(..., 'ascii'); re-save it "
                      "with the default binary mode)", 0)
        stack: list[_Frame] = []
        value = self._start(stack)
        while True:
            while value is _PENDING:  # descend until a leaf completes
                value = self._start(stack)
            if not stack:
                return value
            value = self._deliver(stack, value)

    def _start(self, stack):
        """Read a type tag; return a finished value, or push a frame and return _PENDING."""
        at = self.pos
        tag = self.int("an object type tag")
        if tag == TYPE_NIL:
            return None
        if tag == TYPE_NUMBER:
            self.need(8, "a number (float64)")
            (v,) = struct.unpack_from("<d", self.buf, self.pos)
            self.pos += 8
            return v
        if tag == TYPE_STRING:
            return self.string("a string").encode("latin-1").decode("utf-8", "replace")
        if tag == TYPE_BOOLEAN:
            return self.int("a boolean") == 1
        if tag == TYPE_FUNCTION:
            fn = LuaFunction(self.raw(self.int("function bytecode length"), "function bytecode"))
            stack.append(_Frame("function", fn))
            return _PENDING
        if tag not in (TYPE_TABLE, TYPE_TORCH, TYPE_RECUR_FUNCTION, TYPE_LEGACY_RECUR_FUNCTION):
            self.fail(f"an object type tag (0-8: nil, number, string, table, torch, boolean, function), "
                      f"found {tag}", at)
        index = self.int("a reference index")
        if index in self.objects:
            return self.objects[index]
        if tag == TYPE_TABLE:
            size = self.int("a table size")
            if size < 0 or size * 8 > len(self.buf) - self.pos:  # each pair takes >= 8 bytes
                self.fail(f"a table size that fits in the file, found {size}", self.pos - 4)
            table = LuaTable()
            self.objects[index] = table
            if size == 0:
                return table
            stack.append(_Frame("table", table, size))
            return _PENDING
        if tag != TYPE_TORCH:
            fn = LuaFunction(self.raw(self.int("function bytecode length"), "function bytecode"))
            self.objects[index] = fn
            stack.append(_Frame("function", fn))
            return _PENDING
        return self._torch(stack, index)

    def _torch(self, stack, index):
        at = self.pos
        head = self.string("a torch class version ('V <n>') or class name")
        m = re.fullmatch(r"V (.*)", head)
        if m:
            try:
                version = int(float(m.group(1)))
            except (ValueError, OverflowError):
                self.fail(f"a numeric class version, found {head[:40]!r}", at)
            class_name = self.string("a torch class name")
        else:
            version, class_name = 0, head  # written before torch7 had class versions
        if not re.fullmatch(r"[A-Za-z_][\w.]*", class_name):
            self.fail(f"a torch class name, found {class_name[:40]!r}", at)
        tm = _TENSOR_CLASS.fullmatch(class_name)
        if tm:
            prefix, what = tm.groups()
            dtype = TENSOR_DTYPES.get(prefix)
            if dtype is None:
                self.fail(f"a known tensor/storage type (torch.{{{', '.join(TENSOR_DTYPES)}}}{what}), "
                          f"found '{class_name}'", at)
            if what == "Storage":
                storage = self._storage(np.dtype(dtype), class_name)
                self.objects[index] = storage
                self.class_of[id(storage)] = class_name
                return storage
            header = self._tensor_header(class_name)
            stack.append(_Frame("tensor", None, extra=(index, class_name, np.dtype(dtype), header)))
            return _PENDING
        obj = TorchObject(class_name, None, version)
        self.objects[index] = obj
        stack.append(_Frame("torch", obj))
        return _PENDING

    def _storage(self, dtype, class_name):
        at = self.pos
        size = self.long(f"the element count of a {class_name}")
        if size < 0 or size * dtype.itemsize > len(self.buf) - self.pos:
            self.fail(f"{class_name} data of {size} elements x {dtype.itemsize} bytes, but only "
                      f"{len(self.buf) - self.pos} bytes are left (truncated or corrupt file)", at)
        arr = np.frombuffer(self.buf, dtype=dtype, count=size, offset=self.pos)
        self.pos += size * dtype.itemsize
        return arr

    def _tensor_header(self, class_name):
        at = self.pos
        ndim = self.int(f"the dimension count of a {class_name}")
        if not 0 <= ndim <= _MAX_NDIM:
            self.fail(f"a {class_name} dimension count in 0..{_MAX_NDIM}, found {ndim}", at)
        self.need(16 * ndim + 8, f"the sizes, strides and offset of a {ndim}-d {class_name}")
        sizes = struct.unpack_from(f"<{ndim}q", self.buf, self.pos)
        strides = struct.unpack_from(f"<{ndim}q", self.buf, self.pos + 8 * ndim)
        self.pos += 16 * ndim
        offset = self.long("a storage offset") - 1
        if any(s < 0 for s in sizes) or any(s < 0 for s in strides) or offset < 0:
            self.fail(f"{class_name} sizes, strides >= 0 and a storage offset >= 1, found sizes "
                      f"{list(sizes)}, strides {list(strides)}, offset {offset + 1}", at)
        return at, sizes, strides, offset

    def _tensor(self, index, class_name, dtype, header, storage):
        at, sizes, strides, offset = header
        count = int(np.prod(sizes, dtype=object))
        if count > _MAX_ELEMENTS or any(n > _MAX_ELEMENTS for n in sizes):
            self.fail(f"a {class_name} of at most {_MAX_ELEMENTS} elements, found size {list(sizes)}", at)
        # Torch reads the storage with luaT_checkudata(torch.<Type>Storage): a tensor (or a storage of
        # another type) there is an error, never rows of an array taken for elements.
        want = class_name[:-len("Tensor")] + "Storage"
        if storage is not None and self.class_of.get(id(storage)) != want:
            found = self.class_of.get(id(storage)) or getattr(storage, "class_name", None) or type(storage).__name__
            self.fail(f"a {want} as the storage of a {class_name}, found a {found}", at)
        if len(sizes) == 0 or 0 in sizes:
            arr = np.empty(sizes if sizes else (0,), dtype)
        else:
            if storage is None:
                self.fail(f"the storage of a non-empty {class_name} of size {list(sizes)}, found nil", at)
            # a size-1 dim may carry any stride (only storage[offset] is read along it)
            strides = tuple(0 if n == 1 else s for n, s in zip(sizes, strides))
            last = offset + sum((n - 1) * s for n, s in zip(sizes, strides))
            if last >= storage.size or (count > storage.size and count > _MAX_EXPANDED):
                self.fail(f"a {class_name} of size {list(sizes)}, strides {list(strides)} and offset "
                          f"{offset + 1} to fit in its storage of {storage.size} elements (and, if it repeats "
                          f"elements with stride 0, to show at most {_MAX_EXPANDED})", at)
            arr = np.lib.stride_tricks.as_strided(
                storage[offset:], shape=sizes, strides=[s * dtype.itemsize for s in strides], writeable=False)
        self.objects[index] = arr
        self.class_of[id(arr)] = class_name
        return arr

    def _deliver(self, stack, value):
        """Give a finished ``value`` to the frame on top; return a finished value or _PENDING."""
        frame = stack[-1]
        if frame.kind == "table":
            if not frame.has_key:
                if value is None or (isinstance(value, float) and value != value):
                    self.fail("a table key (not nil or NaN)")
                try:
                    hash(value)
                except TypeError:
                    self.fail(f"a hashable table key, found a {type(value).__name__}")
                frame.key, frame.has_key = value, True
                return _PENDING
            frame.target[frame.key] = value
            frame.has_key = False
            frame.remaining -= 1
            if frame.remaining:
                return _PENDING
            stack.pop()
            return frame.target
        stack.pop()
        if frame.kind == "tensor":
            return self._tensor(*frame.extra, value)
        if frame.kind == "torch":
            frame.target.fields = value if value is not None else LuaTable()
            return frame.target
        frame.target.upvalues = value  # function
        return frame.target


class _Pending:
    __slots__ = ()

    def __repr__(self):
        return "<pending>"


_PENDING = _Pending()
