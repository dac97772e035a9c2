"""Torch7 ``.t7`` files -> NumPy objects -> op graph -> zoo models, without Torch or Lua.

    from converters import torch7
    obj = torch7.load("umich-stacked-hourglass.t7")           # nn modules as TorchObject, tensors as arrays
    graph = torch7.load_graph("umich-stacked-hourglass.t7")   # primitive ops (conv, bn, relu, ...)
    torch7.infer_hourglass_config(graph)                      # {'stacks': 8, 'num_keypoints': 16, ...}
    torch7.port_hourglass(graph, zoo_model)                   # fill zoo.models.hourglass layers, strictly
"""

from converters.torch7.errors import (  # noqa: F401
    Torch7Error,
    Torch7FormatError,
    UnsupportedModuleError,
    WeightsMismatchError,
)
from converters.torch7.graph import Op, OpGraph, load_graph, to_graph  # noqa: F401
from converters.torch7.hourglass import infer_hourglass_config, port_hourglass  # noqa: F401
from converters.torch7.reader import LuaFunction, LuaTable, TorchObject, load, loads, named_tensors  # noqa: F401
