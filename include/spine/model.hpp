// TorchScript model runtime: a model file carries its card (model_card.json, stored as an
// extra file inside the .pt); the loader checks the card against what the caller needs.
// LibTorch itself is a plug-in the library loads when a model is first needed
// (src/model/torch_plugin.hpp); this header has no torch types.
#pragma once
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "spine/tensor.hpp"

namespace spine {

struct ModelClass {
  int label = 0;      // value written into label maps (labels.hpp convention)
  std::string name;
};

// The model's contract. Field names match the JSON keys of model_card.json.
struct ModelCard {
  std::string name;
  std::string version;
  std::string task;                 // e.g. "test-identity", "xray-landmarks", "mr-vertebra-seg"
  std::string modality;             // "ct", "mr", "xray", "any"
  int dimension = 2;                // 2 or 3 spatial dimensions
  int input_channels = 1;
  std::vector<int> patch_size;      // voxels, x y [z]
  std::vector<double> input_spacing_mm;  // empty = native resolution
  nlohmann::json normalisation;     // e.g. {"method": "zscore"}
  std::vector<ModelClass> classes;  // output channel c -> class
  std::string training_data;
  nlohmann::json validation;        // measured figures, free form
  // Known failure modes the user must hear of with every result (e.g. a model trained on
  // synthetic data only); optional, a list of sentences.
  std::vector<std::string> limitations;
  nlohmann::json raw;               // the whole card as read

  static ModelCard from_json(const nlohmann::json& j);  // throws model error when invalid
  nlohmann::json to_json() const { return raw; }
};

// A model as provenance records it.
struct ModelRecord {
  std::string name, version, sha256;
};

// What a caller needs from a model; empty fields are not checked.
struct ModelRequirement {
  std::string task;
  std::vector<std::string> modalities;
  int dimension = 0;
};

// "auto", "cpu", "cuda", "cuda:N". Throws a usage error when CUDA is asked for but the
// linked LibTorch has none or the device does not exist.
std::string resolve_device(const std::string& spec);
bool cuda_available();

// Sets the thread count of torch and ITK (0 = number of cores).
void set_thread_count(int threads);

// Starts loading LibTorch (0.6-0.8 s) on another thread, for a command that will load a
// model once it has read its first input: the two then overlap. Model::load waits for
// the load; without this call it loads LibTorch itself.
void start_loading_model_runtime();

// A model file and, for the models shipped with spine, the SHA-256 pinned at build time
// (models/SHA256SUMS): a file whose bytes differ is refused before TorchScript reads it.
// A user's own model (--model and the like) has no pin; its checksum is logged and
// recorded in provenance.
struct ModelFile {
  std::filesystem::path path;
  std::string pinned_sha256;   // empty: the user's own model
};

// The shipped model `file` ("xray-landmarks.pt"): in $SPINE_MODELS_DIR when set, else in
// models/ of the source tree the executable was built in, else in share/spine/models
// beside an installed executable; never relative to the working directory. Throws a
// model error naming the places looked in when it is in none of them.
ModelFile shipped_model(const std::string& file);
// `user_path` when given (a command-line option), else the shipped model `file`.
ModelFile model_file(const std::string& user_path, const std::string& file);

class Model {
 public:
  // Loads, checks the card, moves to the device, switches to eval mode, and (optimise)
  // freezes it for inference (batch norms folded into convolutions, oneDNN layouts);
  // optimise = false keeps the TorchScript module as saved, for comparisons.
  static Model load(const ModelFile& file, const ModelRequirement& requirement,
                    const std::string& device = "cpu", bool optimise = true);
  // The user's own model (no pin).
  static Model load(const std::filesystem::path& path, const ModelRequirement& requirement,
                    const std::string& device = "cpu") {
    return load(ModelFile{path, ""}, requirement, device);
  }
  // Reads only the card from the file's archive (no TorchScript load: milliseconds),
  // after the same checksum check.
  static ModelCard read_card(const ModelFile& file);
  static ModelCard read_card(const std::filesystem::path& path) { return read_card(ModelFile{path, ""}); }
  // What load() checks before loading (file, checksum, card against the requirement),
  // without loading: a run can refuse a wrong model at once and load it only when a
  // study needs it. Returns the model's provenance record.
  static ModelRecord check(const ModelFile& file, const ModelRequirement& requirement);

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const ModelCard& card() const;
  const std::string& sha256() const;
  const std::string& device() const;
  bool optimised() const;  // frozen and optimised for inference (see load)
  // Runs forward() without gradients. Input [N, C, (Z,) Y, X]; returns the first tensor
  // output (a tuple's first element) as float on the CPU. Throws a model error when the
  // output is empty, of another batch size than the input, not finite, or of another rank
  // than `output_rank` (0: the input's, as for dense outputs; 2 for one vector per item).
  Tensor forward(const Tensor& input, int output_rank = 0) const;
  // An ensemble (scripts/ensemble_models.py: forward() is the mean of its networks):
  // the number of networks, 0 for a model that is not one; and one network's forward()
  // alone, with the same checks (throws a model error for an index out of range).
  int member_count() const;
  Tensor forward_member(int index, const Tensor& input, int output_rank = 0) const;

 private:
  struct Impl;
  template <class Run>
  Tensor checked_output(const Tensor& input, int output_rank, Run run) const;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace spine
