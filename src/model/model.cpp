// Model files, their cards and checks, and the Model class. LibTorch itself is behind the
// plug-in boundary (torch_plugin.hpp): this file reads a model's card with libzip and
// hands the checked bytes to the plug-in.
#include <zip.h>

#include <itkMultiThreaderBase.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include "spine/batch.hpp"
#include "spine/error.hpp"
#include "spine/log.hpp"
#include "spine/model.hpp"
#include "spine/model_hashes.hpp"
#include "model/torch_plugin.hpp"

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

bool cuda_available() {
#ifdef SPINE_TORCH_CUDA
  return detail::torch_runtime().cuda_device_count() > 0;
#else
  return false;  // this build's LibTorch has no CUDA: known without loading it
#endif
}

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
    if (index < 0 || index >= detail::torch_runtime().cuda_device_count())
      throw usage_error("--device " + spec + ": no such CUDA device");
    return "cuda:" + std::to_string(index);
  }
  throw usage_error("--device must be auto, cpu, cuda or cuda:N (got '" + spec + "')");
}

void set_thread_count(int threads) {
  const int n = threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
  detail::set_torch_threads(n);
  itk::MultiThreaderBase::SetGlobalDefaultNumberOfThreads(static_cast<itk::ThreadIdType>(n));
}

struct Model::Impl {
  std::unique_ptr<detail::TorchModule> module;
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

// The card, read from the model's archive without deserialising the module. A TorchScript
// file is a zip archive whose entries all lie in one folder (named after the model), and
// torch.jit.save's extra files are <folder>/extra/<name>. Empty when there is no card.
std::string read_card_text(const fs::path& path, const std::string& bytes) {
  const auto unreadable = [&](const std::string& why) {
    return model_error(path.string() + ": not a readable TorchScript model (" + why + ")");
  };
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* source = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
  zip_t* archive = source ? zip_open_from_source(source, ZIP_RDONLY, &error) : nullptr;
  if (!archive) {
    if (source) zip_source_free(source);
    const std::string why = zip_error_strerror(&error);
    zip_error_fini(&error);
    throw unreadable(why);
  }
  zip_error_fini(&error);
  std::unique_ptr<zip_t, void (*)(zip_t*)> closer(archive, [](zip_t* a) { zip_discard(a); });
  const char* first = zip_get_num_entries(archive, 0) > 0 ? zip_get_name(archive, 0, ZIP_FL_ENC_RAW) : nullptr;
  const char* slash = first ? std::strchr(first, '/') : nullptr;
  if (!slash) throw unreadable("no archive folder");
  const std::string record = std::string(first, slash) + "/extra/" + kCardFile;
  const zip_int64_t index = zip_name_locate(archive, record.c_str(), ZIP_FL_ENC_RAW);
  if (index < 0) return "";
  zip_stat_t stat;
  zip_stat_init(&stat);
  constexpr zip_uint64_t kMaxCard = 1 << 20;  // a card is a few KB
  if (zip_stat_index(archive, static_cast<zip_uint64_t>(index), 0, &stat) != 0 || !(stat.valid & ZIP_STAT_SIZE))
    throw unreadable("its card's entry is damaged");
  if (stat.size > kMaxCard) throw unreadable("its card is over 1 MB");
  zip_file_t* file = zip_fopen_index(archive, static_cast<zip_uint64_t>(index), 0);
  if (!file) throw unreadable(std::string("its card cannot be read: ") + zip_strerror(archive));
  std::string text(static_cast<std::size_t>(stat.size), '\0');
  const zip_int64_t got = text.empty() ? 0 : zip_fread(file, text.data(), stat.size);
  zip_fclose(file);
  if (got != static_cast<zip_int64_t>(stat.size)) throw unreadable("its card's entry is damaged");
  return text;
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
  return parse_card(file.path, read_card_text(file.path, read_verified(file, sha)));
}

ModelRecord Model::check(const ModelFile& file, const ModelRequirement& requirement) {
  std::string sha;
  const ModelCard card = parse_card(file.path, read_card_text(file.path, read_verified(file, sha)));
  check_requirement(file.path, card, requirement);
  return {card.name, card.version, sha};
}

Model Model::load(const ModelFile& file, const ModelRequirement& req, const std::string& device, bool optimise) {
  auto impl = std::make_unique<Impl>();
  const fs::path& path = file.path;
  impl->device = device;
  const std::string bytes = read_verified(file, impl->sha256);
  // The card first: a model for another task is refused before its TorchScript (code) is
  // deserialised.
  impl->card = parse_card(path, read_card_text(path, bytes));
  if (file.pinned_sha256.empty())
    log::info("{}: your own model {} {}, SHA-256 {}", path.string(), impl->card.name, impl->card.version, impl->sha256);
  check_requirement(path, impl->card, req);
  detail::TorchRuntime& torch = detail::torch_runtime();
  try {
    impl->module = torch.load(bytes, device, optimise);
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    throw model_error(path.string() + ": not a readable TorchScript model (" + e.what() + ")");
  }
  impl->optimised = impl->module->optimised();
  return Model(std::move(impl));
}

const ModelCard& Model::card() const { return impl_->card; }
const std::string& Model::sha256() const { return impl_->sha256; }
const std::string& Model::device() const { return impl_->device; }
bool Model::optimised() const { return impl_->optimised; }

int Model::member_count() const { return impl_->module->member_count(); }

Tensor Model::forward(const Tensor& input, int output_rank) const {
  return checked_output(input, output_rank, [&] { return impl_->module->forward(input); });
}

Tensor Model::forward_member(int index, const Tensor& input, int output_rank) const {
  if (index < 0 || index >= member_count())
    throw model_error(impl_->card.name + ": has no network " + std::to_string(index) + " (it is an ensemble of " +
                      std::to_string(member_count()) + ")");
  return checked_output(input, output_rank, [&] { return impl_->module->forward_member(index, input); });
}

template <class Run>
Tensor Model::checked_output(const Tensor& input, int output_rank, Run run) const {
  Tensor out;
  try {
    out = run();
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    throw model_error(impl_->card.name + ": inference failed (" + e.what() + ")");
  }
  // Decoders index into the output by its shape: an empty, mis-shaped or non-finite
  // output must stop here rather than divide by zero or write NaN into results.
  if (out.data.empty()) throw model_error(impl_->card.name + ": model output is empty");
  const auto rank = output_rank > 0 ? static_cast<std::size_t>(output_rank) : input.shape.size();
  const std::int64_t batch = input.shape.empty() ? 0 : input.shape[0];
  const std::int64_t out_batch = out.shape.empty() ? 0 : out.shape[0];
  if (out.shape.size() != rank || out_batch != batch)
    throw model_error(impl_->card.name + ": model output has rank " + std::to_string(out.shape.size()) + " and batch " +
                      std::to_string(out_batch) + " for an input of rank " + std::to_string(input.shape.size()) +
                      " and batch " + std::to_string(batch) + " (expected rank " + std::to_string(rank) + ")");
  if (!std::all_of(out.data.begin(), out.data.end(), [](float v) { return std::isfinite(v); }))
    throw model_error(impl_->card.name + ": model output contains NaN or infinite values (damaged weights?)");
  return out;
}

}  // namespace spine
