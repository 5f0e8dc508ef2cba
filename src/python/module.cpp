// The `umload._core` extension: the public C++ API (src/umload.hpp) for PyTorch users. A load
// returns a dict name -> torch.Tensor whose memory umload allocated, handed over through DLPack
// with no copy; each tensor keeps the loaded weight set alive until the last one is freed.
// Without torch the values are numpy arrays (host memory only; BF16 as uint16 bit patterns).
// docs/python.md is the user's guide.
#include <Python.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "platform/profiles.hpp"
#include "platform/units.hpp"
#include "src/umload.hpp"

namespace py = pybind11;

namespace umload::python {

namespace {

struct error_classes {
  PyObject* base = nullptr;
  PyObject* format = nullptr;
  PyObject* io = nullptr;
  PyObject* device = nullptr;
  PyObject* budget = nullptr;
  PyObject* usage = nullptr;
  PyObject* conflict = nullptr;
  PyObject* mismatch = nullptr;
};
error_classes errors;

const char* kind_name(exit_code c) {
  switch (c) {
    case exit_code::format: return "format";
    case exit_code::io: return "io";
    case exit_code::device: return "device";
    case exit_code::budget: return "budget";
    case exit_code::usage: return "usage";
    case exit_code::conflict: return "conflict";
    case exit_code::mismatch: return "mismatch";
    default: return "internal";
  }
}

// A class `umload.NAME` deriving from `bases`, with class attributes kind and exit_code.
PyObject* make_error_class(py::module_& m, const char* name, py::tuple bases, exit_code code,
                           const char* doc) {
  py::dict attrs;
  attrs["kind"] = kind_name(code);
  attrs["exit_code"] = static_cast<int>(code);
  attrs["__doc__"] = doc;
  const std::string qualified = std::string("umload.") + name;
  PyObject* cls = PyErr_NewException(qualified.c_str(), bases.ptr(), attrs.ptr());
  if (cls == nullptr) throw py::error_already_set();
  m.add_object(name, py::handle(cls));
  return cls;
}

PyObject* class_for(exit_code c) {
  switch (c) {
    case exit_code::format: return errors.format;
    case exit_code::io: return errors.io;
    case exit_code::device: return errors.device;
    case exit_code::budget: return errors.budget;
    case exit_code::usage: return errors.usage;
    case exit_code::conflict: return errors.conflict;
    case exit_code::mismatch: return errors.mismatch;
    default: return errors.base;
  }
}

void raise(const umload::error& e) {
  PyObject* cls = class_for(e.code());
  PyObject* instance = PyObject_CallFunction(cls, "s", e.what());
  if (instance == nullptr) return;  // the constructor's own error stays set
  if (const auto* io = dynamic_cast<const io_error*>(&e); io && io->errno_value() != 0) {
    PyObject* number = PyLong_FromLong(io->errno_value());
    if (number) {
      PyObject_SetAttrString(instance, "errno", number);
      Py_DECREF(number);
    }
  }
  PyErr_SetObject(cls, instance);
  Py_DECREF(instance);
}

py::object from_json(const nlohmann::json& j) {
  return py::module_::import("json").attr("loads")(j.dump());
}

shard_request sharding(std::optional<int> rank, std::optional<int> world_size) {
  shard_request s;
  s.rank = rank;
  s.world_size = world_size;
  return s;
}

std::optional<std::uint64_t> size_argument(const py::object& value, const char* what) {
  if (value.is_none()) return std::nullopt;
  if (py::isinstance<py::str>(value)) return platform::parse_size(value.cast<std::string>());
  if (py::isinstance<py::int_>(value) && !py::isinstance<py::bool_>(value)) {
    const long long n = value.cast<long long>();
    if (n < 0) throw usage_error(std::string(what) + " must not be negative");
    return static_cast<std::uint64_t>(n);
  }
  throw usage_error(std::string(what) + " must be a byte count or a size such as \"80G\"");
}

// Runs on the loading thread, which holds no GIL during a load. It takes the GIL to call the
// user's callback, and to let Ctrl-C stop the load: without a callback only every quarter
// second, so that a busy Python thread elsewhere does not slow every staged item down. A Python
// exception becomes error_already_set, which unwinds the load and reaches Python unchanged.
std::function<void(const progress_event&)> progress_hook(const py::object* callback) {
  constexpr double signal_interval_s = 0.25;
  return [callback, next_check = 0.0](const progress_event& e) mutable {
    if (callback == nullptr && e.seconds < next_check) return;
    next_check = e.seconds + signal_interval_s;
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (callback != nullptr)
      (*callback)(e.bytes_done, e.bytes_total, e.tensors_done, e.tensors_total);
  };
}

void check_callback(const py::object& progress) {
  if (!progress.is_none() && !PyCallable_Check(progress.ptr()))
    throw usage_error(
        "progress must be a callable taking (bytes_done, bytes_total, tensors_done, "
        "tensors_total), or None");
}

enum class framework { torch, numpy };

framework choose_framework(const std::string& name, py::object& from_dlpack) {
  if (name == "numpy") return framework::numpy;
  if (name != "auto" && name != "torch")
    throw usage_error("framework '" + name + "' (expected auto, torch or numpy)");
  try {
    from_dlpack = py::module_::import("torch.utils.dlpack").attr("from_dlpack");
    return framework::torch;
  } catch (py::error_already_set& e) {
    if (name == "torch" || !e.matches(PyExc_ImportError)) throw;
    return framework::numpy;
  }
}

void delete_capsule(PyObject* capsule) {
  // A consumer that took the tensor renames the capsule to "used_dltensor" and owns it now.
  if (PyCapsule_IsValid(capsule, "dltensor")) {
    auto* t = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
    if (t != nullptr && t->deleter != nullptr) t->deleter(t);
  }
}

py::object torch_tensor(const std::shared_ptr<const weight_set>& weights, const loaded_tensor& t,
                        const py::object& from_dlpack) {
  DLManagedTensor* dl = to_dlpack(weights, t, managed_export::cuda);
  PyObject* capsule = PyCapsule_New(dl, "dltensor", &delete_capsule);
  if (capsule == nullptr) {
    dl->deleter(dl);
    throw py::error_already_set();
  }
  return from_dlpack(py::reinterpret_steal<py::object>(capsule));
}

py::dtype numpy_dtype(dtype type) {
  switch (type) {
    case dtype::U8: return py::dtype("uint8");
    case dtype::I8: return py::dtype("int8");
    case dtype::U16: return py::dtype("uint16");
    case dtype::BF16: return py::dtype("uint16");  // numpy has no bfloat16: the bit patterns
    case dtype::I16: return py::dtype("int16");
    case dtype::F16: return py::dtype("float16");
    case dtype::U32: return py::dtype("uint32");
    case dtype::I32: return py::dtype("int32");
    case dtype::F32: return py::dtype("float32");
    case dtype::U64: return py::dtype("uint64");
    case dtype::I64: return py::dtype("int64");
    case dtype::F64: return py::dtype("float64");
    default:
      throw usage_error("dtype " + std::string(to_string(type)) + " has no numpy equivalent");
  }
}

py::object numpy_array(const std::shared_ptr<const weight_set>& weights, const loaded_tensor& t) {
  if (t.where != memory_kind::host)
    throw usage_error("tensor '" + t.name +
                      "' is in GPU memory, which numpy cannot hold: install "
                      "torch, or load with device=\"cpu\"");
  const py::dtype dt = numpy_dtype(t.type);
  std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
  std::vector<py::ssize_t> strides;
  for (const auto s : contiguous_strides(t.shape)) strides.push_back(s * dt.itemsize());
  // The array's base owns one reference to the weight set.
  py::capsule owner(new std::shared_ptr<const weight_set>(weights),
                    [](void* p) { delete static_cast<std::shared_ptr<const weight_set>*>(p); });
  return py::array(dt, shape, strides, t.data, owner);
}

py::object report_dict(const load_report& r) { return from_json(to_json(r)); }

py::object load(const std::filesystem::path& path, const std::string& device,
                const std::string& layout_name, const std::string& dtype_name,
                std::optional<int> rank, std::optional<int> world_size, const py::object& progress,
                const std::optional<std::string>& profile, int threads, bool digest,
                const std::string& framework_name, bool with_report, bool with_weights) {
  check_callback(progress);
  load_request request;
  request.device = device;
  request.order = parse_layout(layout_name);
  request.dtype = parse_output_dtype(dtype_name);
  request.sharding = sharding(rank, world_size);
  request.platform.profile = profile;
  request.threads = threads;
  request.digest = digest;
  request.on_progress = progress_hook(progress.is_none() ? nullptr : &progress);
  py::object from_dlpack;
  const framework fw = choose_framework(framework_name, from_dlpack);

  load_result result;
  {
    py::gil_scoped_release release;
    result = model::open(path).load(request);
  }
  const std::shared_ptr<const weight_set> weights = std::move(result.weights);
  py::dict state;
  for (const auto& t : weights->tensors())
    state[py::str(t.name)] =
        fw == framework::torch ? torch_tensor(weights, t, from_dlpack) : numpy_array(weights, t);
  if (!with_report && !with_weights) return state;
  py::list parts;
  parts.append(state);
  if (with_report) parts.append(report_dict(result.report));
  if (with_weights) parts.append(std::const_pointer_cast<weight_set>(weights));
  return py::tuple(parts);
}

py::object plan(const std::filesystem::path& path, const std::optional<std::string>& profile,
                const std::string& dtype_name, const std::string& layout_name,
                std::optional<int> rank, std::optional<int> world_size,
                const py::object& device_memory, const py::object& host_memory) {
  plan_request request;
  request.platform.profile = profile;
  request.dtype = parse_output_dtype(dtype_name);
  request.order = parse_layout(layout_name);
  request.sharding = sharding(rank, world_size);
  request.platform.device_memory_bytes = size_argument(device_memory, "device_memory");
  request.platform.host_memory_bytes = size_argument(host_memory, "host_memory");
  platform::placement_plan p;
  {
    py::gil_scoped_release release;
    p = model::open(path).plan(request);
  }
  return from_json(platform::to_json(p));
}

py::object platform_dict(const std::optional<std::string>& profile) {
  platform::platform_info info;
  {
    py::gil_scoped_release release;
    platform_choice choice;
    choice.profile = profile;
    info = detect_platform(choice);
  }
  return from_json(platform::to_json(info));
}

py::object inspect(const std::filesystem::path& path) {
  std::optional<model> m;
  {
    py::gil_scoped_release release;
    m = model::open(path);
  }
  nlohmann::json tensors = nlohmann::json::object();
  for (const auto& t : m->stored_tensors())
    tensors[t.name] = {{"dtype", std::string(to_string(t.type))},
                       {"shape", t.shape},
                       {"bytes", t.bytes},
                       {"file", t.file.filename().string()}};
  const auto& ckpt = m->files();
  nlohmann::json j = {
      {"source", ckpt.source.string()},
      {"shards", ckpt.shards.size()},
      {"tensor_bytes", ckpt.tensor_bytes()},
      {"quantized_bytes", m->map().quantized_bytes},
      {"dense_bytes", m->map().dense_bytes},
      {"expert_pairs", m->map().pair_count()},
      {"config", ckpt.config ? ckpt.config->raw : nlohmann::json(nullptr)},
      {"tensors", tensors},
  };
  return from_json(j);
}

py::object convert(const std::filesystem::path& source, const std::filesystem::path& destination,
                   const std::string& layout_name, const std::string& dtype_name,
                   std::optional<int> rank, std::optional<int> world_size,
                   const py::object& memory_budget, const py::object& shard_size, bool force,
                   const std::string& device, int threads, const py::object& progress) {
  check_callback(progress);
  convert_request request;
  request.order = parse_layout(layout_name);
  request.dtype = parse_output_dtype(dtype_name);
  request.sharding = sharding(rank, world_size);
  request.memory_budget = size_argument(memory_budget, "memory_budget").value_or(0);
  if (auto s = size_argument(shard_size, "shard_size")) request.shard_bytes = *s;
  request.force = force;
  request.device = device;
  request.threads = threads;
  request.on_progress = progress_hook(progress.is_none() ? nullptr : &progress);
  convert_report r;
  {
    py::gil_scoped_release release;
    r = umload::convert(source, destination, request);
  }
  nlohmann::json j = {
      {"destination", r.destination.string()},
      {"device", r.device},
      {"tensors", r.tensors},
      {"shards", r.shards},
      {"output_bytes", r.output_bytes},
      {"memory_budget", r.memory_budget},
      {"peak_rss_bytes", r.peak_rss_bytes},
      {"seconds", r.pipeline.seconds},
      {"bytes_read", r.pipeline.bytes_read},
  };
  return from_json(j);
}

}  // namespace

}  // namespace umload::python

// umload._core: the compiled half of the `umload` package (src/python/umload/), which re-exports
// it; the exception classes are named umload.X, as users meet them.
PYBIND11_MODULE(_core, m) {
  using namespace umload::python;
  namespace u = umload;
  m.doc() = "umload's loader, compiled; use it through the umload package (docs/python.md).";
  m.attr("__version__") = UMLOAD_VERSION;

  py::tuple plain = py::make_tuple(py::handle(PyExc_Exception));
  errors.base = make_error_class(m, "Error", plain, u::exit_code::internal,
                                 "Every umload failure; `kind` and `exit_code` say which.");
  py::handle base(errors.base);
  errors.format =
      make_error_class(m, "FormatError", py::make_tuple(base), u::exit_code::format,
                       "A bad or corrupt checkpoint (file, tensor, field, value, limit).");
  errors.io = make_error_class(m, "IoError", py::make_tuple(base, py::handle(PyExc_OSError)),
                               u::exit_code::io, "A failed system call; errno and path.");
  errors.device =
      make_error_class(m, "CudaError", py::make_tuple(base), u::exit_code::device,
                       "A CUDA failure, or a GPU asked of a build or machine without one.");
  errors.budget = make_error_class(m, "BudgetError", py::make_tuple(base), u::exit_code::budget,
                                   "The load cannot fit the memory available.");
  errors.usage =
      make_error_class(m, "UsageError", py::make_tuple(base, py::handle(PyExc_ValueError)),
                       u::exit_code::usage, "Bad arguments.");
  errors.conflict =
      make_error_class(m, "ConflictError", py::make_tuple(base), u::exit_code::conflict,
                       "The destination holds something not asked to be replaced.");
  errors.mismatch = make_error_class(m, "MismatchError", py::make_tuple(base),
                                     u::exit_code::mismatch, "Results that should agree do not.");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const u::error& e) {
      raise(e);
    }
  });

  py::class_<u::weight_set, std::shared_ptr<u::weight_set>>(
      m, "WeightSet", "The loaded tensors' owner (load(..., with_weights=True)).")
      .def(
          "prefetch",
          [](const u::weight_set& w, const std::vector<int>& layers,
             std::optional<std::uintptr_t> stream) {
            py::gil_scoped_release release;
            return w.prefetch(layers, stream ? reinterpret_cast<void*>(*stream) : nullptr);
          },
          py::arg("layers"), py::arg("stream") = py::none(),
          R"(Move the spilled (host-managed) tensors of `layers` toward the GPU ahead of their use,
in the plan's order, on `stream` (a cudaStream_t as an int, e.g. torch.cuda.Stream().cuda_stream;
None: one of the loader's own). Returns one line per tensor ("NAME: prefetch cuda:0", or
"NAME: simulated: ..." where the host stands in for the GPU). Nothing is spilled outside coherent
plans.)");

  m.def("load", &load, py::arg("path"), py::kw_only(), py::arg("device") = "auto",
        py::arg("layout") = "hf", py::arg("dtype") = "bf16", py::arg("rank") = py::none(),
        py::arg("world_size") = py::none(), py::arg("progress") = py::none(),
        py::arg("profile") = py::none(), py::arg("threads") = 0, py::arg("digest") = false,
        py::arg("framework") = "auto", py::arg("with_report") = false,
        py::arg("with_weights") = false,
        R"(Load a checkpoint; returns {name: tensor}.

device: "auto" (CUDA when usable, else CPU), "cpu", "cuda" (the GPU UMLOAD_DEVICE or LOCAL_RANK
names, else 0) or "cuda:N". layout: "hf" (experts [E, in, out]) or "native" ([E, out, in]).
dtype: "bf16", "f32" or "keep" (MXFP4 blocks and scales as stored). rank, world_size: the
expert-parallel slice (default: RANK and WORLD_SIZE). progress: called as
progress(bytes_done, bytes_total, tensors_done, tensors_total). profile: plan as on a built-in
machine profile (umload.profiles()); default UMLOAD_PROFILE, else this machine. framework: "auto" (torch when
importable, else numpy), "torch" or "numpy". with_report: return (state_dict, report).
with_weights: the WeightSet last in the tuple returned, for WeightSet.prefetch.)");
  m.def("plan", &plan, py::arg("path"), py::kw_only(), py::arg("profile") = py::none(),
        py::arg("dtype") = "bf16", py::arg("layout") = "hf", py::arg("rank") = py::none(),
        py::arg("world_size") = py::none(), py::arg("device_memory") = py::none(),
        py::arg("host_memory") = py::none(),
        "Where every tensor would go on this machine or a profile (headers only); a dict as "
        "`umload plan --json`.");
  m.def("platform", &platform_dict, py::arg("profile") = py::none(),
        "This machine (or a profile) as a dict, as `umload platform --json`.");
  m.def(
      "profiles", [] { return u::platform::profile_names(); },
      "Names of the built-in machine profiles.");
  m.def("inspect", &inspect, py::arg("path"),
        "Config, shards and every stored tensor (headers only).");
  m.def("convert", &convert, py::arg("source"), py::arg("destination"), py::kw_only(),
        py::arg("layout") = "hf", py::arg("dtype") = "bf16", py::arg("rank") = py::none(),
        py::arg("world_size") = py::none(), py::arg("memory_budget") = py::none(),
        py::arg("shard_size") = py::none(), py::arg("force") = false, py::arg("device") = "auto",
        py::arg("threads") = 0, py::arg("progress") = py::none(),
        "Write a dense (BF16 or F32 experts) checkpoint that HF transformers loads; returns a "
        "report dict.");
}
