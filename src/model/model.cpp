// TorchScript model loading and inference behind a pimpl; the only translation unit
// besides the device helpers that includes torch headers.
#include <torch/script.h>
#include <torch/cuda.h>
#include <torch/utils.h>
#include <caffe2/serialize/inline_container.h>

#include <itkMultiThreaderBase.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include "spine/batch.hpp"
#include "spine/error.hpp"
#include "spine/log.hpp"
#include "spine/model.hpp"
#include "spine/model_hashes.hpp"

// Torch's headers define glog-style CHECK/LOG macros that clash with other code.
#undef CHECK
#undef LOG

namespace fs = std::filesystem;

namespace spine {

namespace {

const char* kCardFile = "model_card.json";

template <class T>
T required(const nlohmann::json& j, const char* key) {
  if (!j.contains(key)) throw model_error(std::string("model card lacks '") + key + "'");
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw model_error(std::string("model card field '") + key + "' has the wrong type");
  }
}

}  // namespace

ModelCard ModelCard::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw model_error("model card is not a JSON object");
  ModelCard c;
  c.raw = j;
  c.name = required<std::string>(j, "name");
  c.version = required<std::string>(j, "version");
  c.task = required<std::string>(j, "task");
  c.modality = required<std::string>(j, "modality");
  c.dimension = required<int>(j, "dimension");
  if (c.dimension != 2 && c.dimension != 3) throw model_error("model card dimension must be 2 or 3");
  c.input_channels = j.value("input_channels", 1);
  c.patch_size = required<std::vector<int>>(j, "patch_size");
  if (static_cast<int>(c.patch_size.size()) != c.dimension)
    throw model_error("model card patch_size must have one entry per dimension");
  for (int p : c.patch_size) {
    if (p <= 0) throw model_error("model card patch_size entries must be positive");
  }
  c.input_spacing_mm = j.value("input_spacing_mm", std::vector<double>{});
  c.normalisation = j.value("normalisation", nlohmann::json::object());
  for (const auto& cls : required<nlohmann::json>(j, "classes")) {
    c.classes.push_back({cls.at("label").get<int>(), cls.at("name").get<std::string>()});
  }
  c.training_data = j.value("training_data", std::string());
  c.validation = j.value("validation", nlohmann::json::object());
  if (j.contains("limitations")) {
    const auto& l = j["limitations"];
    if (!l.is_array() || !std::all_of(l.begin(), l.end(), [](const nlohmann::json& s) { return s.is_string(); }))
      throw model_error("model card limitations must be a list of strings");
    c.limitations = l.get<std::vector<std::string>>();
  }
  return c;
}

bool cuda_available() { return torch::cuda::is_available(); }

std::string resolve_device(const std::string& spec) {
  if (spec == "cpu") return "cpu";
  if (spec == "auto") return cuda_available() ? "cuda:0" : "cpu";
  if (spec.rfind("cuda", 0) == 0) {
    if (!cuda_available())
      throw usage_error("--device " + spec + ": this build's LibTorch has no usable CUDA device");
    int index = 0;
    if (spec.size() > 4) {
      if (spec[4] != ':') throw usage_error("--device must be auto, cpu, cuda or cuda:N");
      try {
        index = std::stoi(spec.substr(5));
      } catch (...) {
        throw usage_error("--device must be auto, cpu, cuda or cuda:N");
      }
    }
    if (index < 0 || index >= static_cast<int>(torch::cuda::device_count()))
      throw usage_error("--device " + spec + ": no such CUDA device");
    return "cuda:" + std::to_string(index);
  }
  throw usage_error("--device must be auto, cpu, cuda or cuda:N (got '" + spec + "')");
}

void set_thread_count(int threads) {
  const int n = threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
  torch::set_num_threads(n);
  itk::MultiThreaderBase::SetGlobalDefaultNumberOfThreads(static_cast<itk::ThreadIdType>(n));
}

struct Model::Impl {
  torch::jit::script::Module module;
  ModelCard card;
  std::string sha256;
  std::string device;
  bool optimised = false;
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

namespace {

// Reads the whole file and checks its SHA-256 against the pin (when there is one); the
// callers then read only these bytes, so that what was checked is what is used
// (TorchScript is code: nothing of a file whose bytes differ from the pin is read).
std::string read_verified(const ModelFile& file, std::string& sha256) {
  const fs::path& path = file.path;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw model_error(path.string() + ": model file not found");
  // One read into a buffer of the file's size: a model is 2-11 MB, and growing a string
  // stream copied it several times over (0.1 s per model on this machine's page faults).
  const auto size = fs::file_size(path, ec);
  if (ec) throw model_error(path.string() + ": cannot read the model file");
  std::string bytes(size, '\0');
  {
    std::ifstream in(path, std::ios::binary);
    in.read(bytes.data(), static_cast<std::streamsize>(size));
    if (!in || in.gcount() != static_cast<std::streamsize>(size) || in.peek() != std::ifstream::traits_type::eof())
      throw model_error(path.string() + ": cannot read the model file (it changed while being read?)");
  }
  sha256 = sha256_bytes(bytes);
  if (!file.pinned_sha256.empty() && sha256 != file.pinned_sha256)
    throw model_error(path.string() + ": checksum mismatch (SHA-256 " + sha256.substr(0, 16) + "..., pinned " +
                      file.pinned_sha256.substr(0, 16) + "... at build time): the shipped model was changed or "
                      "damaged, so it is not loaded; reinstall it, or pass your own model with its option");
  return bytes;
}

// The verified bytes as LibTorch's archive reader sees a file, without another copy
// (an istringstream would copy them).
class BytesAdapter : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit BytesAdapter(const std::string& bytes) : bytes_(bytes) {}
  size_t size() const override { return bytes_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= bytes_.size()) return 0;
    n = std::min<size_t>(n, bytes_.size() - pos);
    std::memcpy(buf, bytes_.data() + pos, n);
    return n;
  }

 private:
  const std::string& bytes_;
};

std::string first_line(const c10::Error& e) {
  std::string msg = e.what_without_backtrace();
  return msg.substr(0, msg.find('\n'));
}

torch::jit::script::Module load_module(const ModelFile& file, std::string& card_text, const std::string& device,
                                       std::string& sha256) {
  const std::string bytes = read_verified(file, sha256);
  torch::jit::ExtraFilesMap extra{{kCardFile, ""}};
  try {
    auto module = torch::jit::load(std::make_shared<BytesAdapter>(bytes), torch::Device(device), extra);
    card_text = extra[kCardFile];
    return module;
  } catch (const c10::Error& e) {
    throw model_error(file.path.string() + ": not a readable TorchScript model (" + first_line(e) + ")");
  }
}

// The card alone, read from the model's archive (TorchScript keeps extra files as
// extra/<name>) without deserialising the module: a few milliseconds instead of a load.
std::string read_card_text(const ModelFile& file, std::string& sha256) {
  const std::string bytes = read_verified(file, sha256);
  try {
    caffe2::serialize::PyTorchStreamReader reader(std::make_shared<BytesAdapter>(bytes));
    const std::string record = std::string("extra/") + kCardFile;
    if (!reader.hasRecord(record)) return "";
    auto [data, size] = reader.getRecord(record);
    return std::string(static_cast<const char*>(data.get()), size);
  } catch (const c10::Error& e) {
    throw model_error(file.path.string() + ": not a readable TorchScript model (" + first_line(e) + ")");
  }
}

ModelCard parse_card(const fs::path& path, const std::string& text) {
  if (text.empty()) throw model_error(path.string() + ": model has no model_card.json");
  try {
    return ModelCard::from_json(nlohmann::json::parse(text));
  } catch (const nlohmann::json::exception& e) {
    throw model_error(path.string() + ": model card is not valid JSON");
  } catch (const Error& e) {
    throw e.with_context(path.string());
  }
}

void check_requirement(const fs::path& path, const ModelCard& c, const ModelRequirement& req) {
  if (!req.task.empty() && c.task != req.task)
    throw model_error(path.string() + ": model is for task '" + c.task + "', this command needs '" +
                      req.task + "'");
  if (!req.modalities.empty() &&
      std::find(req.modalities.begin(), req.modalities.end(), c.modality) == req.modalities.end())
    throw model_error(path.string() + ": model is for modality '" + c.modality + "'");
  if (req.dimension != 0 && c.dimension != req.dimension)
    throw model_error(path.string() + ": model is " + std::to_string(c.dimension) + "D, this command needs " +
                      std::to_string(req.dimension) + "D");
}

}  // namespace

ModelFile shipped_model(const std::string& file) {
  std::vector<fs::path> places;
  if (const char* dir = std::getenv("SPINE_MODELS_DIR")) {
    places.push_back(fs::path(dir) / file);
  } else {
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
      places.push_back(exe.parent_path() / ".." / ".." / "models" / file);  // build/bin -> models
      places.push_back(exe.parent_path() / ".." / "share" / "spine" / "models" / file);
    }
  }
  std::string pin;
  for (const auto* p = detail::kPinnedModels; p->file; ++p)
    if (file == p->file) pin = p->sha256;
  if (pin.empty()) throw model_error(file + ": not a model shipped with this build (models/SHA256SUMS)");
  std::string looked;
  for (const auto& candidate : places) {
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec)) return {fs::weakly_canonical(candidate), pin};
    looked += (looked.empty() ? "" : ", ") + candidate.lexically_normal().string();
  }
  throw model_error("shipped model " + file + " not found (looked in " + looked +
                    "); set SPINE_MODELS_DIR or give the model's option");
}

ModelFile model_file(const std::string& user_path, const std::string& file) {
  return user_path.empty() ? shipped_model(file) : ModelFile{user_path, ""};
}

ModelCard Model::read_card(const ModelFile& file) {
  std::string sha;
  return parse_card(file.path, read_card_text(file, sha));
}

ModelRecord Model::check(const ModelFile& file, const ModelRequirement& requirement) {
  std::string sha;
  const ModelCard card = parse_card(file.path, read_card_text(file, sha));
  check_requirement(file.path, card, requirement);
  return {card.name, card.version, sha};
}

Model Model::load(const ModelFile& file, const ModelRequirement& req, const std::string& device, bool optimise) {
  auto impl = std::make_unique<Impl>();
  std::string text;
  const fs::path& path = file.path;
  impl->device = device;
  impl->module = load_module(file, text, device, impl->sha256);
  impl->card = parse_card(path, text);
  if (file.pinned_sha256.empty())
    log::info("{}: your own model {} {}, SHA-256 {}", path.string(), impl->card.name, impl->card.version, impl->sha256);
  check_requirement(path, impl->card, req);
  impl->module.eval();
  // Freezing inlines the weights and folds each batch norm into its convolution;
  // optimize_for_inference then runs the convolutions in oneDNN's blocked layout
  // without converting between layouts at every layer. Same outputs to ~1e-5, and
  // about 1.8x faster for the CT U-Net on one 256 x 256 slice, 2 threads (measured
  // from Python with torch.jit.optimize_for_inference, the same pass). A module the
  // passes cannot handle stays as it was: slower, never different.
  if (optimise) {
    try {
      impl->module = torch::jit::optimize_for_inference(impl->module);
      impl->optimised = true;
    } catch (const c10::Error&) {
    }
  }
  return Model(std::move(impl));
}

const ModelCard& Model::card() const { return impl_->card; }
const std::string& Model::sha256() const { return impl_->sha256; }
const std::string& Model::device() const { return impl_->device; }
bool Model::optimised() const { return impl_->optimised; }

Tensor Model::forward(const Tensor& input, int output_rank) const {
  torch::NoGradGuard no_grad;
  try {
    auto in = torch::from_blob(const_cast<float*>(input.data.data()), input.shape, torch::kFloat32)
                  .to(torch::Device(impl_->device));
    torch::jit::IValue result = impl_->module.forward({in});
    if (result.isTuple()) result = result.toTuple()->elements().at(0);
    if (!result.isTensor()) throw model_error("model output is not a tensor");
    auto out = result.toTensor().to(torch::kCPU, torch::kFloat32).contiguous();
    // Decoders index into the output by its shape: an empty, mis-shaped or non-finite
    // output must stop here rather than divide by zero or write NaN into results.
    if (out.numel() == 0) throw model_error(impl_->card.name + ": model output is empty");
    const auto rank = output_rank > 0 ? static_cast<std::int64_t>(output_rank) : in.dim();
    if (out.dim() != rank || out.size(0) != in.size(0))
      throw model_error(impl_->card.name + ": model output has rank " + std::to_string(out.dim()) + " and batch " +
                        std::to_string(out.size(0)) + " for an input of rank " + std::to_string(in.dim()) +
                        " and batch " + std::to_string(in.size(0)) + " (expected rank " + std::to_string(rank) + ")");
    if (!torch::isfinite(out).all().item<bool>())
      throw model_error(impl_->card.name + ": model output contains NaN or infinite values (damaged weights?)");
    Tensor t;
    t.shape.assign(out.sizes().begin(), out.sizes().end());
    t.data.assign(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
    return t;
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    throw model_error(impl_->card.name + ": inference failed (" + msg.substr(0, msg.find('\n')) + ")");
  }
}

}  // namespace spine
