"""Port a Torch7 Stacked Hourglass (``princeton-vl/pose-hg-train`` ``src/models/hg.lua`` +
``layers/Residual.lua``; the ``umich-stacked-hourglass.t7`` release) into :func:`zoo.models.hourglass`.

A strict structural walk of the op graph (:mod:`converters.torch7.graph`) that mirrors ``hg.lua``:
it starts at the network input, follows each op's consumers by kind (sibling branches are told
apart by op kind, shapes and by which op is a network output), checks every shape and setting, and
assigns each convolution / batch normalization to the zoo layer of the same role:

- stem: conv 3->64 7x7/2 pad 3 (``stem_conv``), BN (``stem_bn``), ReLU, ``Residual(64,128)``
  (``stem_res1``), maxpool 2x2/2, ``Residual(128,128)`` (``stem_res2``), ``Residual(128,F)`` (``stem_res3``);
- per stack ``i``: ``hourglass(4)`` (``stack{i}_hg{4..1}_{up1,low1,low2,low3}_res{m}``), ``nModules``
  residuals (``stack{i}_res{m}``) and one lin = conv 1x1 + BN + ReLU (``stack{i}_lin_conv``/``_lin_bn``) —
  or, in the released ``umich-stacked-hourglass.t7`` (earlier ``hg.lua``), ``nModules`` lin layers and no
  residual (``post_residuals=False`` in the builder; ``stack{i}_lin{j}_*`` for j > 1) — the
  heatmaps conv (``stack{i}_heatmaps``, the i-th network output) and, before the last stack,
  ``inter = inter + conv1x1(ll) + conv1x1(heatmaps)`` (``stack{i}_inter_ll``, ``stack{i}_inter_heatmaps``).

A residual ``Residual(n_in, n)`` is BN-ReLU-conv1x1(n/2)-BN-ReLU-conv3x3(n/2, pad 1)-BN-ReLU-conv1x1(n),
added (``CAddTable``: conv block first) to the input itself when ``n_in == n``, else to a 1x1 conv
of it. Any deviation raises :class:`WeightsMismatchError` naming the file, the place in the net and
what was expected there; ops left over after the walk are an error too.
"""

from __future__ import annotations

import fnmatch
import re

import numpy as np

from converters.torch7.errors import WeightsMismatchError
from converters.torch7.graph import Op, OpGraph, describe, load_graph

__all__ = ["infer_hourglass_config", "port_hourglass", "DEPTH", "BN_EPSILON"]

DEPTH = 4  # hourglass(4, ...) in hg.lua
BN_EPSILON = 1e-5  # zoo.models.hourglass builds every BatchNormalization with Torch's default
_HEAD_PATTERNS = ("stack*_heatmaps", "stack*_inter_heatmaps")  # = zoo.models.hourglass.HEAD_LAYERS


def _as_graph(graph_or_path) -> OpGraph:
    return graph_or_path if isinstance(graph_or_path, OpGraph) else load_graph(graph_or_path)


def infer_hourglass_config(graph_or_path) -> dict:
    """The builder arguments of the Stacked Hourglass in a ``.t7`` file (or its :class:`OpGraph`).

    The whole network is walked and checked, so a file of another architecture raises here.

    Returns:
        ``dict(stacks, num_keypoints, features, modules, post_residuals)`` (``nStack``, ``nParts``, ``nFeats``,
        ``nModules``; ``post_residuals`` False for the released model's layout: lin layers right after
        each hourglass, as in the earlier ``hg.lua``).
    Raises:
        WeightsMismatchError: the network is not a ``hg.lua`` Stacked Hourglass (names the place).
    """
    return dict(_Walk(_as_graph(graph_or_path)).run().cfg)


def port_hourglass(graph_or_path, model, *, skip_head: bool = False) -> dict:
    """Fill a zoo ``hourglass`` model with the weights of a Torch7 Stacked Hourglass.

    Args:
        graph_or_path: a ``.t7`` path or an :class:`OpGraph` from :func:`converters.torch7.graph.load_graph`.
        model: a model built by ``zoo.models.hourglass.hourglass`` (any input size), possibly on an
            ``input_tensor`` with the caller's layers in front; those are left as they are.
        skip_head: leave the keypoint-dependent layers (``stack*_heatmaps``, ``stack*_inter_heatmaps``)
            untouched, so a model with another ``num_keypoints`` can take everything else.
    Returns:
        ``dict(config=..., filled=[zoo layer names], skipped=[zoo layer names])``.
    Raises:
        WeightsMismatchError: the file is not a ``hg.lua`` Stacked Hourglass, or its stacks /
            features / modules (and num_keypoints unless ``skip_head``) differ from the model's, or
            a layer is missing or has another shape. Nothing is changed in the model then.
    """
    walk = _Walk(_as_graph(graph_or_path)).run()
    src, cfg = walk.src, walk.cfg
    mine = _model_config(model, src)
    keys = ("stacks", "features", "modules", "post_residuals") + (() if skip_head else ("num_keypoints",))
    if any(cfg[k] != mine[k] for k in keys):
        raise WeightsMismatchError(
            f"Torch7 file '{src}' holds a Stacked Hourglass with {_fmt(cfg)}, but the model '{model.name}' has "
            f"{_fmt(mine)}: build the model with {_fmt(cfg, keys)} (zoo.get('hourglass', weights=...) reads "
            f"them from the file)"
        )
    # The caller's layers in front of an input_tensor (zoo.get(..., input_tensor=adapter(x))) are not the
    # release's: they keep their weights, as zoo weights files and the Caffe port leave them.
    upstream = set(getattr(model, "_zoo_upstream_layers", ()))
    layers = {l.name: l for l in model.layers if l.weights and l.name not in upstream}
    skipped = [n for n in layers if skip_head and any(fnmatch.fnmatchcase(n, p) for p in _HEAD_PATTERNS)]
    problems = []
    for name, arrays in walk.arrays.items():
        if name in skipped:
            continue
        layer = layers.get(name)
        if layer is None:
            problems.append(f"no zoo layer '{name}' for {walk.origin[name]}")
            continue
        want = [tuple(w.shape) for w in layer.weights]
        have = [a.shape for a in arrays]
        if want != have:
            problems.append(f"'{name}' has weights {want}, the Torch module {walk.origin[name]} gives {have}")
    left = [n for n in layers if n not in walk.arrays and n not in skipped]
    if left:
        problems.append(f"zoo layers with no Torch module: {', '.join(left[:10])}{' ...' if len(left) > 10 else ''}")
    if problems:
        raise WeightsMismatchError(f"Torch7 file '{src}' does not fit model '{model.name}': " + "; ".join(problems))
    filled = []
    for name, arrays in walk.arrays.items():
        if name not in skipped:
            layers[name].set_weights(arrays)
            filled.append(name)
    return {"config": dict(cfg), "filled": filled, "skipped": skipped}


def _fmt(cfg, keys=("stacks", "features", "modules", "post_residuals", "num_keypoints")):
    return ", ".join(f"{k}={cfg[k]}" for k in keys)


def _model_config(model, src):
    names = {l.name: l for l in model.layers}
    try:
        features = names["stem_res3_conv3"].filters
        keypoints = names["stack1_heatmaps"].filters
    except KeyError:
        raise WeightsMismatchError(
            f"Torch7 file '{src}': model '{model.name}' is not a zoo hourglass (no 'stem_res3_conv3' / "
            f"'stack1_heatmaps' layers); build it with zoo.models.hourglass.hourglass()"
        ) from None
    return {
        "stacks": sum(1 for n in names if re.fullmatch(r"stack\d+_heatmaps", n)),
        "num_keypoints": keypoints,
        "features": features,
        "modules": sum(1 for n in names if re.fullmatch(r"stack1_hg4_up1_res\d+_add", n)),
        "post_residuals": "stack1_res1_add" in names,
    }


class _Walk:
    def __init__(self, graph: OpGraph):
        self.g, self.src = graph, graph.source
        self.cfg = {"stacks": None, "num_keypoints": None, "features": None, "modules": None, "post_residuals": None}
        self.claimed: set[int] = set()
        self.arrays: dict[str, list] = {}  # zoo layer -> Keras weights
        self.origin: dict[str, str] = {}  # zoo layer -> where its Torch module sits

    # ------------------------------------------------------------------------------ checks
    def fail(self, place, expected, found, hint=""):
        if not hint and any(o.kind == "concat" for o in self.g.ops):
            hint = (" (the network concatenates features with JoinTable, which hg.lua never does: an older "
                    "design such as pose-hg-train's hg-stacked.lua?)")
        raise WeightsMismatchError(f"Torch7 file '{self.src}', {place}: expected {expected}, found {found}{hint}")

    def _show(self, ops):
        ops = [o for o in ops if id(o) not in self.claimed]
        return " and ".join(f"{describe(o)} ({o.where})" for o in ops) or "nothing (the network ends there)"

    def _free(self, op):
        return [c for c in op.consumers if id(c) not in self.claimed]

    def consumer(self, x, kind, place, expected, hint=""):
        """The one unclaimed consumer of ``x`` of this ``kind`` (``x`` may feed other branches)."""
        found = [c for c in self._free(x) if c.kind == kind]
        if len(found) != 1:
            self.fail(place, expected, self._show(x.consumers), hint)
        return found[0]

    def only(self, x, kind, place, expected):
        """The single consumer of ``x``, which must be of this ``kind``."""
        free = self._free(x)
        if len(free) != 1 or free[0].kind != kind:
            self.fail(place, f"{expected} as the only layer after {describe(x)}", self._show(x.consumers))
        return free[0]

    def put(self, name, op, arrays):
        self.arrays[name] = [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
        self.origin[name] = op.where
        self.claimed.add(id(op))

    def conv(self, op, place, cin, cout, k, *, stride=1, pad=0, name):
        """Check a convolution (``cout=None``: any); returns its output channels."""
        exp = (f"SpatialConvolution {cin}->{cout if cout else 'n'} {k}x{k}" + (f" stride {stride}" if stride != 1 else "")
               + (f" pad {pad}" if pad else ""))
        if op.kind != "conv":
            self.fail(place, exp, f"{describe(op)} ({op.where})")
        a = op.attrs
        o, i, kh, kw = a["weight"].shape
        if (a["groups"] != 1 or i != cin or (cout is not None and o != cout) or (kh, kw) != (k, k)
                or a["stride"] != (stride, stride) or a["pad"] != (pad, pad)):
            self.fail(place, exp, f"{describe(op)}" + (f" in {a['groups']} groups" if a["groups"] != 1 else "")
                      + f" ({op.where})")
        bias = a["bias"] if a["bias"] is not None else np.zeros(o, np.float32)  # :noBias() convs add nothing
        self.put(name, op, [np.transpose(a["weight"], (2, 3, 1, 0)), bias])
        return o

    def bn(self, op, place, channels, *, name):
        exp = f"SpatialBatchNormalization({channels})"
        if op.kind != "bn" or op.attrs["gamma"].shape[0] != channels:
            self.fail(place, exp, f"{describe(op)} ({op.where})")
        eps = op.attrs["eps"]
        if not abs(eps - BN_EPSILON) <= 1e-12:  # a NaN eps is not the builder's either
            self.fail(place, f"{exp} with eps {BN_EPSILON:g} (the zoo hourglass builder's BatchNormalization "
                             f"epsilon)", f"eps {eps:g} ({op.where})")
        a = op.attrs
        self.put(name, op, [a["gamma"], a["beta"], a["mean"], a["var"]])

    def relu(self, x, place):
        op = self.only(x, "relu", place, "ReLU")
        self.claimed.add(id(op))
        return op

    def pool(self, op, place):
        a = op.attrs
        if a["kernel"] != (2, 2) or a["stride"] != (2, 2) or a["pad"] != (0, 0) or a["ceil_mode"]:
            self.fail(place, "SpatialMaxPooling 2x2/2 (floor mode)", f"{describe(op)} ({op.where})")
        self.claimed.add(id(op))
        return op

    # ------------------------------------------------------------------------------ structure
    def residual(self, x, cin, cout, place, name, hint=""):
        """``Residual(cin, cout)`` reading ``x`` (``cout=None``: discover it); returns (output op, cout)."""
        bn1 = self.consumer(x, "bn", place, f"a Residual module starting with SpatialBatchNormalization({cin})",
                            hint)
        self.bn(bn1, f"{place}, bn1", cin, name=f"{name}_bn1")
        r = self.relu(bn1, f"{place}, relu1")
        c1 = self.only(r, "conv", f"{place}, conv1", "SpatialConvolution 1x1")
        mid = self.conv(c1, f"{place}, conv1", cin, None if cout is None else cout // 2, 1, name=f"{name}_conv1")
        cout = 2 * mid if cout is None else cout
        bn2 = self.only(c1, "bn", f"{place}, bn2", f"SpatialBatchNormalization({mid})")
        self.bn(bn2, f"{place}, bn2", mid, name=f"{name}_bn2")
        r = self.relu(bn2, f"{place}, relu2")
        c2 = self.only(r, "conv", f"{place}, conv2", "SpatialConvolution 3x3")
        self.conv(c2, f"{place}, conv2", mid, mid, 3, pad=1, name=f"{name}_conv2")
        bn3 = self.only(c2, "bn", f"{place}, bn3", f"SpatialBatchNormalization({mid})")
        self.bn(bn3, f"{place}, bn3", mid, name=f"{name}_bn3")
        r = self.relu(bn3, f"{place}, relu3")
        c3 = self.only(r, "conv", f"{place}, conv3", "SpatialConvolution 1x1")
        self.conv(c3, f"{place}, conv3", mid, cout, 1, name=f"{name}_conv3")
        add = self.only(c3, "add", f"{place}, sum", "CAddTable{conv block, skip}")
        if len(add.inputs) != 2 or add.inputs[0] is not c3:
            self.fail(f"{place}, sum", "CAddTable of {conv block, skip}", f"{describe(add)} ({add.where})")
        skip = add.inputs[1]
        if cin == cout and skip is not x:
            self.fail(f"{place}, skip", f"the identity (Residual({cin},{cout}) adds its input)",
                      f"{describe(skip)} ({skip.where})")
        if cin != cout:
            if skip.kind != "conv" or skip.inputs != [x]:
                self.fail(f"{place}, skip", f"SpatialConvolution {cin}->{cout} 1x1 of the module input",
                          f"{describe(skip)} ({skip.where})")
            self.conv(skip, f"{place}, skip", cin, cout, 1, name=f"{name}_skip")
        self.claimed.add(id(add))
        return add, cout

    def chain(self, x, place, name, hint=""):
        """``nModules`` residuals ``Residual(F, F)``; the first chain walked sets ``nModules``."""
        f, m = self.cfg["features"], self.cfg["modules"]
        if m is None:
            m = 0
            while any(c.kind == "bn" for c in self._free(x)) or m == 0:
                m += 1
                x, _ = self.residual(x, f, f, f"{place}, residual {m}", f"{name}_res{m}", hint)
            self.cfg["modules"] = m
            return x
        for j in range(1, m + 1):
            x, _ = self.residual(x, f, f, f"{place}, residual {j}", f"{name}_res{j}", hint)
        return x

    def hourglass(self, x, n, s):
        lvl, name = f"stack {s}, hourglass level {n}", f"stack{s}_hg{n}"
        up1 = self.chain(x, f"{lvl}, upper branch (up1)", f"{name}_up1")
        pool = self.consumer(x, "maxpool", f"{lvl}, lower branch (low1)", "SpatialMaxPooling 2x2/2 of the level input")
        self.pool(pool, f"{lvl}, lower branch (low1) pooling")
        low1 = self.chain(pool, f"{lvl}, lower branch (low1)", f"{name}_low1")
        if n > 1:
            low2 = self.hourglass(low1, n - 1, s)
        else:
            low2 = self.chain(low1, f"{lvl}, bottom (low2)", f"{name}_low2")
        low3 = self.chain(low2, f"{lvl}, lower branch (low3)", f"{name}_low3")
        up2 = self.only(low3, "upsample_nearest", f"{lvl}, upsampling (up2)", "SpatialUpSamplingNearest(2)")
        if up2.attrs["scale"] != 2:
            self.fail(f"{lvl}, upsampling (up2)", "SpatialUpSamplingNearest(2)", f"{describe(up2)} ({up2.where})")
        self.claimed.add(id(up2))
        add = self.only(up2, "add", f"{lvl}, sum of the branches", "CAddTable{up1, up2}")
        if len(add.inputs) != 2 or {id(o) for o in add.inputs} != {id(up1), id(up2)}:
            self.fail(f"{lvl}, sum of the branches", "CAddTable{up1, up2}", f"{describe(add)} ({add.where})")
        self.claimed.add(id(add))
        return add

    def lin(self, x, s, j):
        """``lin`` (1x1 conv + BN + ReLU) number ``j`` after stack ``s``'s hourglass; returns the ReLU."""
        f, name = self.cfg["features"], f"stack{s}_lin" if j == 1 else f"stack{s}_lin{j}"
        place = f"stack {s}, lin {j}" if j > 1 else f"stack {s}, lin"
        conv = self.only(x, "conv", place, f"SpatialConvolution {f}->{f} 1x1")
        self.conv(conv, f"{place} conv", f, f, 1, name=f"{name}_conv")
        bn = self.only(conv, "bn", place, f"SpatialBatchNormalization({f})")
        self.bn(bn, f"{place} BN", f, name=f"{name}_bn")
        return self.relu(bn, f"{place} ReLU")

    def stem(self):
        if len(self.g.inputs) != 1:
            self.fail("the network input", "one input image", f"{len(self.g.inputs)} inputs")
        c = self.only(self.g.inputs[0], "conv", "stem", "SpatialConvolution 3->64 7x7 stride 2 pad 3")
        self.conv(c, "stem, first convolution", 3, 64, 7, stride=2, pad=3, name="stem_conv")
        bn = self.only(c, "bn", "stem", "SpatialBatchNormalization(64)")
        self.bn(bn, "stem, first BN", 64, name="stem_bn")
        x = self.relu(bn, "stem, first ReLU")
        x, _ = self.residual(x, 64, 128, "stem, residual 1 (r1)", "stem_res1")
        pool = self.only(x, "maxpool", "stem, pooling", "SpatialMaxPooling 2x2/2")
        x = self.pool(pool, "stem, pooling")
        x, _ = self.residual(x, 128, 128, "stem, residual 2 (r4)", "stem_res2")
        x, f = self.residual(x, 128, None, "stem, residual 3 (r5)", "stem_res3")
        self.cfg["features"] = f
        return x

    def run(self):
        outputs = self.g.outputs
        if not outputs or any(o.kind != "conv" for o in outputs):
            self.fail("the network outputs", "one heatmap convolution per stack",
                      ", ".join(f"{describe(o)} ({o.where})" for o in outputs) or "no outputs")
        self.cfg["stacks"] = stacks = len(outputs)
        inter = self.stem()
        f = self.cfg["features"]
        for s in range(1, stacks + 1):
            hg = self.hourglass(inter, DEPTH, s)
            # The released model (earlier hg.lua) goes from the hourglass straight to nModules lin layers;
            # the final hg.lua puts nModules residuals, then one lin. The first stack decides; all must agree.
            post = not any(c.kind == "conv" for c in self._free(hg))
            if self.cfg["post_residuals"] is None:
                self.cfg["post_residuals"] = post
            elif post != self.cfg["post_residuals"]:
                self.fail(f"stack {s}, after the hourglass", "the layout of stack 1 ("
                          + ("residuals, then lin" if self.cfg["post_residuals"] else "lin layers, no residual") + ")",
                          self._show(hg.consumers))
            if post:
                ll = self.lin(self.chain(hg, f"stack {s}, residual after the hourglass", f"stack{s}"), s, 1)
            else:
                ll = hg
                for j in range(1, self.cfg["modules"] + 1):
                    ll = self.lin(ll, s, j)
            free = self._free(ll)
            heads = [c for c in free if any(c is o for o in outputs)]
            want = 1 if s == stacks else 2
            if len(heads) != 1 or len(free) != want or heads[0] is not outputs[s - 1]:
                exp = f"the heatmap convolution {f}->K 1x1 (network output {s} of {stacks})"
                if s < stacks:
                    exp += f" and SpatialConvolution {f}->{f} 1x1 (fed back to stack {s + 1})"
                self.fail(f"stack {s}, after lin", exp, self._show(ll.consumers))
            head = heads[0]
            k = self.conv(head, f"stack {s}, heatmaps", f, self.cfg["num_keypoints"], 1, name=f"stack{s}_heatmaps")
            self.cfg["num_keypoints"] = k
            if s == stacks:
                if self._free(head):
                    self.fail(f"stack {s}, heatmaps", "the last stack's heatmaps to be a network output only",
                              self._show(head.consumers))
                break
            back = next(c for c in free if c is not head)
            self.conv(back, f"stack {s}, feature feedback (ll_)", f, f, 1, name=f"stack{s}_inter_ll")
            hm = self.only(head, "conv", f"stack {s}, heatmap feedback (tmpOut_)", f"SpatialConvolution {k}->{f} 1x1")
            self.conv(hm, f"stack {s}, heatmap feedback (tmpOut_)", k, f, 1, name=f"stack{s}_inter_heatmaps")
            add = self.only(back, "add", f"stack {s}, feedback sum", "CAddTable{inter, ll_, tmpOut_}")
            if len(add.inputs) != 3 or {id(o) for o in add.inputs} != {id(inter), id(back), id(hm)}:
                self.fail(f"stack {s}, feedback sum", "CAddTable{inter, ll_, tmpOut_}",
                          f"{describe(add)} ({add.where})")
            self.claimed.add(id(add))
            inter = add
        left = [o for o in self.g.ops if o.kind != "input" and id(o) not in self.claimed]
        if left:
            self.fail("the whole network", "no layers beyond the Stacked Hourglass structure",
                      f"{len(left)} more: " + "; ".join(f"{describe(o)} ({o.where})" for o in left[:8]))
        return self
