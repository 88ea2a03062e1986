"""TEST DOUBLE for the ``tensorrt`` Python module -- not TensorRT. See tests/doubles/README.md.

Put ``tests/doubles/fake_tensorrt`` first on ``sys.path`` and ``import tensorrt`` gets this.
``FAKE_TENSORRT_VERSION`` (read at import) picks the surface: ``10.x`` keeps the deprecated
weak-typing API (``BuilderFlag.FP16``, ``EXPLICIT_BATCH``, ``int8_calibrator``,
``platform_has_fast_fp16``); ``11.x`` does not have them, so code that uses them fails here as it
would on TensorRT 11. ``FAKE_TENSORRT_FAIL=parse|oom`` makes parsing or building fail.

Recording: ``_ACCESSED`` holds every public attribute name asked of the module, its classes and
objects (including the callbacks it calls on user subclasses); ``_CALLS`` holds (name, args).
``_reset()`` clears both.
"""
from __future__ import annotations

import json
import os
import sys
import types

__version__ = os.environ.get("FAKE_TENSORRT_VERSION", "10.13.3.9")
_MAJOR = int(__version__.split(".")[0])
_FAIL = os.environ.get("FAKE_TENSORRT_FAIL", "")
_PLAN_MAGIC = b"FAKE-TENSORRT-PLAN\n"
_CACHE_MAGIC = b"FAKE-TC\n"
_ACCESSED: set[str] = set()
_CALLS: list[tuple[str, tuple]] = []
_STATE = {"plugins": False}


def _reset() -> None:
    _ACCESSED.clear()
    _CALLS.clear()


def _record(name: str) -> None:
    if not name.startswith("_"):
        _ACCESSED.add(name)


def _enum_member(enum: type, name: str):
    """The fake's own lookups are not recorded: only what the code under test asks for."""
    return type.__getattribute__(enum, name)


def _get(obj, name: str):
    return object.__getattribute__(obj, name)


def _call(name: str, *args) -> None:
    _CALLS.append((name, args))


class _RecordingMeta(type):
    def __getattribute__(cls, name):
        _record(name)
        return super().__getattribute__(name)


class _Recorded(metaclass=_RecordingMeta):
    _SETTABLE: tuple[str, ...] = ()

    def __getattribute__(self, name):
        _record(name)
        return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        if not name.startswith("_"):
            if name not in type(self)._SETTABLE:
                raise AttributeError(f"fake tensorrt {__version__}: {type(self).__name__} has no "
                                     f"settable attribute {name!r}")
            _record(name)
            _call(f"{type(self).__name__}.{name}=", value)
        object.__setattr__(self, name, value)


class _EnumValue:
    def __init__(self, enum: str, name: str, value: int):
        self._enum, self._name, self._value = enum, name, value

    def __int__(self):
        return self._value

    def __index__(self):
        return self._value

    def __eq__(self, other):
        return isinstance(other, _EnumValue) and (self._enum, self._value) == (other._enum, other._value)

    def __hash__(self):
        return hash((self._enum, self._value))

    def __repr__(self):
        return f"<{self._enum}.{self._name}: {self._value}>"

    __str__ = lambda self: f"{self._enum}.{self._name}"  # noqa: E731 - pybind11 enum str()


def _enum(name: str, members: list[str]) -> type:
    attrs = {member: _EnumValue(name, member, i) for i, member in enumerate(members)}
    return _RecordingMeta(name, (_Recorded,), attrs)


_SEVERITY = ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"]
DataType = _enum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8", "BF16",
                              "INT64", "INT4"])
TensorIOMode = _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
# both majors (tests/test_tensorrt_api_surface.py finds the names in the real 10.13 and 11.4 bindings)
HardwareCompatibilityLevel = _enum("HardwareCompatibilityLevel", ["NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"])
MemoryPoolType = _enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM",
                                          "DLA_GLOBAL_DRAM", "TACTIC_DRAM", "TACTIC_SHARED_MEMORY"])
if _MAJOR >= 11:
    NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", ["STRONGLY_TYPED"])
    BuilderFlag = _enum("BuilderFlag", ["DEBUG", "GPU_FALLBACK", "REFIT", "TF32", "VERSION_COMPATIBLE"])
else:
    NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag",
                                          ["EXPLICIT_BATCH", "STRONGLY_TYPED"])
    BuilderFlag = _enum("BuilderFlag", ["FP16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT", "TF32",
                                        "BF16", "VERSION_COMPATIBLE"])


class ILogger(_Recorded):
    Severity = _enum("Severity", _SEVERITY)

    def __init__(self):
        pass

    def log(self, severity, msg):  # overridden by users
        pass


_SEV = type.__getattribute__(ILogger, "Severity")
for _member in _SEVERITY:  # pybind11 export_values(): ILogger.ERROR as well as ILogger.Severity.ERROR
    type.__setattr__(ILogger, _member, _enum_member(_SEV, _member))
_ACCESSED.clear()


class Logger(ILogger):
    def __init__(self, min_severity=None):
        self._min = min_severity


class IProgressMonitor(_Recorded):
    def __init__(self):
        pass


def init_libnvinfer_plugins(logger, namespace):
    _call("init_libnvinfer_plugins", namespace)
    if not isinstance(logger, ILogger):
        raise TypeError("init_libnvinfer_plugins(): logger must be an ILogger")
    _STATE["plugins"] = True
    return True


def _onnx_io(path: str):
    import onnx  # noqa: PLC0415 - the fake reads the real graph to know its inputs/outputs
    from onnx import helper  # noqa: PLC0415

    model = onnx.load(path, load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}

    def spec(v, mode):
        t = v.type.tensor_type
        return {"name": v.name, "mode": mode, "dtype": helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                "shape": [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]}

    tensors = [spec(v, "INPUT") for v in model.graph.input if v.name not in initializers]
    tensors += [spec(v, "OUTPUT") for v in model.graph.output]
    plugins = sorted({n.op_type for n in model.graph.node if n.op_type.endswith("_TRT")})
    return tensors, plugins


class INetworkDefinition(_Recorded):
    def __init__(self, flags: int):
        self._flags = flags
        self._tensors: list[dict] = []
        self._plugins: list[str] = []


class _ParserError:
    def __init__(self, text):
        self._text = text

    def __str__(self):
        return self._text


class OnnxParser(_Recorded):
    def __init__(self, network, logger):
        _call("OnnxParser", type(network).__name__)
        self._network, self._logger, self._errors = network, logger, []

    def parse_from_file(self, path):
        _call("parse_from_file", path)
        if _FAIL == "parse":
            self._errors = [_ParserError("In node 12 with name: /model.23/Split and operator: Split "
                                         "(importSplit): UNSUPPORTED_NODE: Assertion failed: axis"),
                            _ParserError("In node -1 with name:  and operator:  (parseGraph): "
                                         "INVALID_GRAPH: Assertion failed: second error\nwith newline")]
            return False
        tensors, plugins = _onnx_io(path)
        if plugins and not _STATE["plugins"]:
            self._errors = [_ParserError(f"In node 0 with name: nms and operator: {plugins[0]} "
                                         "(checkFallbackPluginImporter): INVALID_NODE: creator not found")]
            return False
        self._network._tensors, self._network._plugins = tensors, plugins
        return True

    @property
    def num_errors(self):
        return len(self._errors)

    def get_error(self, index):
        return self._errors[index]


class IOptimizationProfile(_Recorded):
    def __init__(self):
        self._shapes: dict[str, tuple] = {}

    def set_shape(self, name, min, opt, max):  # noqa: A002 - TensorRT's keyword names
        _call("set_shape", name, tuple(min), tuple(opt), tuple(max))
        if not all(a <= b <= c for a, b, c in zip(min, opt, max)) or not len(min) == len(opt) == len(max):
            raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
        self._shapes[name] = (tuple(min), tuple(opt), tuple(max))


class ITimingCache(_Recorded):
    def __init__(self, blob: bytes):
        self._blob = blob

    def serialize(self):
        _call("serialize")
        return memoryview((self._blob or _CACHE_MAGIC) + b"entry\n")

    def combine(self, other, ignore_mismatch):
        """Adds the other cache's lines this one lacks (the fake's stand-in for merging tactic timings)."""
        _call("combine", ignore_mismatch)
        if not isinstance(other, ITimingCache):
            raise TypeError("combine(): other must be an ITimingCache")
        mine = self._blob.splitlines(keepends=True)
        self._blob = b"".join(mine + [line for line in other._blob.splitlines(keepends=True) if line not in mine])
        return True


class IBuilderConfig(_Recorded):
    _SETTABLE = ("builder_optimization_level", "progress_monitor", "hardware_compatibility_level") + (
        ("int8_calibrator",) if _MAJOR < 11 else ())

    def __init__(self):
        self._pools: dict = {}
        self._profiles: list = []
        self._cache = None
        self._flags: set = set()
        object.__setattr__(self, "builder_optimization_level", 3)
        object.__setattr__(self, "progress_monitor", None)
        object.__setattr__(self, "hardware_compatibility_level",
                           _enum_member(HardwareCompatibilityLevel, "NONE"))

    def set_memory_pool_limit(self, pool, size):
        _call("set_memory_pool_limit", str(pool), size)
        self._pools[str(pool)] = size

    def add_optimization_profile(self, profile):
        _call("add_optimization_profile", dict(profile._shapes))
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def create_timing_cache(self, blob):
        _call("create_timing_cache", bytes(blob))
        return ITimingCache(bytes(blob))

    def set_timing_cache(self, cache, ignore_mismatch):
        ok = not cache._blob or cache._blob.startswith(_CACHE_MAGIC)
        _call("set_timing_cache", ignore_mismatch, ok)
        if ok:
            self._cache = cache
        return ok

    def get_timing_cache(self):
        return self._cache

    def set_flag(self, flag):
        _call("set_flag", str(flag))
        self._flags.add(str(flag))


class Builder(_Recorded):
    def __init__(self, logger):
        _call("Builder")
        self._logger = logger

    if _MAJOR < 11:
        @property
        def platform_has_fast_fp16(self):
            return True

    def create_network(self, flags=0):
        _call("create_network", int(flags))
        return INetworkDefinition(int(flags))

    def create_builder_config(self):
        return IBuilderConfig()

    def create_optimization_profile(self):
        return IOptimizationProfile()

    def build_serialized_network(self, network, config):
        _call("build_serialized_network")
        inputs = [t for t in network._tensors if t["mode"] == "INPUT"]
        if not config._profiles:
            raise RuntimeError("fake: dynamic input without an optimization profile")
        for tensor in inputs:
            if tensor["name"] not in config._profiles[0]._shapes:
                self._logger.log(_enum_member(_SEV, "ERROR"), f"no profile shapes for input {tensor['name']}")
                return None
        monitor = _get(config, "progress_monitor")
        if monitor is not None:
            monitor.phase_start("Building engine", None, 2)
            monitor.phase_start("Tactic selection", "Building engine", 3)
            for step in range(3):
                if monitor.step_complete("Tactic selection", step) is False:
                    return None
            monitor.phase_finish("Tactic selection")
            monitor.step_complete("Building engine", 0)
            monitor.phase_finish("Building engine")
        if _FAIL == "oom":
            self._logger.log(_enum_member(_SEV, "ERROR"), "[virtualMemoryBuffer.cpp::resizePhysical::140] "
                             "Error Code 2: OutOfMemory (Requested size was 17179869184 bytes.)")
            return None
        self._logger.log(_enum_member(_SEV, "INFO"), "fake engine built")
        shapes = {name: [list(s) for s in v] for name, v in config._profiles[0]._shapes.items()}
        body = {"version": __version__, "flags": network._flags, "tensors": network._tensors,
                "profile": shapes, "pools": config._pools, "plugins": network._plugins,
                "opt_level": _get(config, "builder_optimization_level"),
                "hardware_compatibility_level": str(_get(config, "hardware_compatibility_level")),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}  # the GPU the build ran on
        if config._cache is not None:
            config._cache._blob = (config._cache._blob or _CACHE_MAGIC) + b"built\n"
        return memoryview(_PLAN_MAGIC + json.dumps(body, sort_keys=True).encode())


class ICudaEngine(_Recorded):
    def __init__(self, body: dict):
        self._tensors = body["tensors"]

    @property
    def num_io_tensors(self):
        return len(self._tensors)

    def get_tensor_name(self, index):
        return self._tensors[index]["name"]

    def _tensor(self, name):
        return next(t for t in self._tensors if t["name"] == name)

    def get_tensor_mode(self, name):
        return _enum_member(TensorIOMode, self._tensor(name)["mode"])

    def get_tensor_shape(self, name):
        return tuple(self._tensor(name)["shape"])

    def get_tensor_dtype(self, name):
        names = {"float32": "FLOAT", "float16": "HALF", "int32": "INT32", "int64": "INT64",
                 "uint8": "UINT8", "int8": "INT8", "bool": "BOOL"}
        return _enum_member(DataType, names[self._tensor(name)["dtype"]])


class Runtime(_Recorded):
    def __init__(self, logger):
        self._logger = logger

    def deserialize_cuda_engine(self, blob):
        blob = bytes(blob)
        if not blob.startswith(_PLAN_MAGIC):
            self._logger.log(_enum_member(_SEV, "ERROR"), "Serialization assertion failed (fake)")
            return None
        return ICudaEngine(json.loads(blob[len(_PLAN_MAGIC):]))


class _RecordingModule(types.ModuleType):
    def __getattribute__(self, name):
        if name == "__version__" or not name.startswith("_"):
            _ACCESSED.add(name)
        return super().__getattribute__(name)


_ACCESSED.clear()
sys.modules[__name__].__class__ = _RecordingModule
