// The model loader: card parsing and checks, rejection of mismatching or broken models.
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "spine/error.hpp"
#include "spine/model.hpp"
#include "test_util.hpp"

namespace spine {
namespace {

TEST(Model, LoadsCardAndRunsOnCpu) {
  const Model m = Model::load(test::test_models() / "pointwise2d.pt", {"test-pointwise", {"any"}, 2}, "cpu");
  EXPECT_EQ(m.card().name, "test-pointwise-2d");
  EXPECT_EQ(m.card().dimension, 2);
  EXPECT_EQ(m.card().classes.size(), 3u);
  EXPECT_EQ(m.sha256().size(), 64u);
  Tensor in({2, 1, 5, 7}, 0.25f);
  const Tensor out = m.forward(in);
  EXPECT_EQ(out.shape, (std::vector<std::int64_t>{2, 3, 5, 7}));
}

TEST(Model, RejectsWrongTask) {
  try {
    Model::load(test::test_models() / "wrong_task.pt", {"test-pointwise", {}, 0});
    FAIL() << "wrong task accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("task 'another-task'"), std::string::npos) << e.what();
  }
}

TEST(Model, RejectsWrongDimensionAndModality) {
  EXPECT_THROW(Model::load(test::test_models() / "pointwise3d.pt", {"test-pointwise", {}, 2}), Error);
  EXPECT_THROW(Model::load(test::test_models() / "pointwise2d.pt", {"test-pointwise", {"ct"}, 0}), Error);
}

TEST(Model, RejectsModelWithoutCard) {
  try {
    Model::load(test::test_models() / "no_card.pt", {});
    FAIL() << "card-less model accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no model_card.json"), std::string::npos) << e.what();
  }
}

TEST(Model, RejectsUnreadableFile) {
  test::TempDir dir;
  { std::ofstream(dir / "bad.pt") << "not a zip archive"; }
  EXPECT_THROW(Model::load(dir / "bad.pt", {}), Error);
  EXPECT_THROW(Model::load(dir / "missing.pt", {}), Error);
}

// A model file cut short (a download or copy interrupted) is refused with an error,
// whether only its card is read or the whole model is loaded.
TEST(Model, RejectsTruncatedFile) {
  test::TempDir dir;
  std::ifstream in(test::test_models() / "pointwise2d.pt", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 1000u);
  { std::ofstream(dir / "cut.pt", std::ios::binary) << bytes.substr(0, bytes.size() * 6 / 10); }
  for (const bool whole : {false, true}) {
    try {
      if (whole) Model::load(dir / "cut.pt", {});
      else Model::read_card(dir / "cut.pt");
      FAIL() << "truncated model accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("not a readable TorchScript model"), std::string::npos) << e.what();
    }
  }
}

// The card is read without LibTorch: a zip archive with a valid card but no TorchScript
// passes the card checks, and LibTorch (the plug-in) refuses it when it is loaded.
TEST(Model, CardIsReadWithoutLibTorchAndTheModelWithIt) {
  const auto file = test::test_models() / "card_only.pt";
  EXPECT_EQ(Model::read_card(file).name, "test-pointwise-2d");
  EXPECT_NO_THROW(Model::check({file, ""}, {"test-pointwise", {"any"}, 2}));
  try {
    Model::load(file, {"test-pointwise", {"any"}, 2});
    FAIL() << "a card without a model was loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a readable TorchScript model ("), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line: " << e.what();
  }
}

// LibTorch is a plug-in loaded when a model is first needed: reading cards does not load
// it, loading a model does, and a load started in the background is waited for.
TEST(Model, LibTorchIsLoadedOnlyForAModel) {
  std::error_code ec;
  const auto plugin = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path() / ".." / "lib" / "libspine_torch.so";
  const auto loaded = [&] {
    void* h = dlopen(plugin.c_str(), RTLD_NOW | RTLD_NOLOAD);
    if (h) dlclose(h);  // drops only the reference RTLD_NOLOAD took
    return h != nullptr;
  };
  // ctest runs each test in its own process; the whole binary at once loads it earlier.
  if (loaded()) GTEST_SKIP() << "an earlier test in this process loaded the plug-in";
  Model::read_card(test::test_models() / "pointwise2d.pt");
  EXPECT_FALSE(loaded());
  start_loading_model_runtime();
  start_loading_model_runtime();  // a second call changes nothing
  const Model m = Model::load(test::test_models() / "pointwise2d.pt", {"test-pointwise", {"any"}, 2}, "cpu");
  EXPECT_TRUE(loaded());
  EXPECT_EQ(m.forward(Tensor({1, 1, 4, 4}, 0.5f)).shape, (std::vector<std::int64_t>{1, 3, 4, 4}));
}

TEST(Model, CardValidation) {
  nlohmann::json j{{"name", "x"}, {"version", "1"}, {"task", "t"}, {"modality", "ct"},
                   {"dimension", 3}, {"patch_size", {8, 8}}, {"classes", nlohmann::json::array()}};
  EXPECT_THROW(ModelCard::from_json(j), Error);  // patch_size needs 3 entries
  j["patch_size"] = {8, 8, 8};
  EXPECT_NO_THROW(ModelCard::from_json(j));
  j.erase("task");
  EXPECT_THROW(ModelCard::from_json(j), Error);
}

// A card's known failure modes are read as sentences; anything else is a broken card.
TEST(Model, CardLimitations) {
  nlohmann::json j{{"name", "x"}, {"version", "1"}, {"task", "t"}, {"modality", "ct"},
                   {"dimension", 2}, {"patch_size", {8, 8}}, {"classes", nlohmann::json::array()}};
  EXPECT_TRUE(ModelCard::from_json(j).limitations.empty());
  j["limitations"] = {"trained on synthetic data only", "names unreliable on real CT"};
  const ModelCard c = ModelCard::from_json(j);
  ASSERT_EQ(c.limitations.size(), 2u);
  EXPECT_EQ(c.limitations[1], "names unreliable on real CT");
  j["limitations"] = "a plain string";
  EXPECT_THROW(ModelCard::from_json(j), Error);
  j["limitations"] = {"ok", 3};
  EXPECT_THROW(ModelCard::from_json(j), Error);
}

TEST(Model, DeviceResolution) {
  EXPECT_EQ(resolve_device("cpu"), "cpu");
  const std::string automatic = resolve_device("auto");
  EXPECT_TRUE(automatic == "cpu" || automatic.rfind("cuda:", 0) == 0);
  EXPECT_THROW(resolve_device("tpu"), Error);
  if (!cuda_available()) {
    EXPECT_THROW(resolve_device("cuda:0"), Error);
  }
}


// Freezing and optimising for inference (batch norms folded, oneDNN layouts) must not
// change what a shipped model computes: on a fixed random input of the card's patch size,
// every output of the optimised module lies within 1e-4 of the saved module's, relative
// to the output's largest magnitude (float32 reassociation differs by about 1e-6).
TEST(Model, OptimisedShippedModelsComputeWhatTheSavedOnesDo) {
  for (const char* file : {"ct-spine-seg.pt", "mr-spine-seg.pt", "xray-spine-finder.pt", "xray-landmarks.pt",
                           "xray-corners.pt", "mr-disc-grading.pt"}) {
    const ModelFile mf = shipped_model(file);
    const Model fast = Model::load(mf, {}, "cpu", true);
    const Model plain = Model::load(mf, {}, "cpu", false);
    EXPECT_TRUE(fast.optimised()) << file;
    EXPECT_FALSE(plain.optimised()) << file;
    const auto& c = fast.card();
    ASSERT_EQ(c.patch_size.size(), 2u) << file;
    const std::int64_t batch = c.task == "mr-disc-grading" ? 5 : 2;  // a series' discs; two slices
    Tensor in({batch, c.input_channels, c.patch_size[1], c.patch_size[0]});
    std::uint32_t state = 12345;
    for (float& v : in.data) v = static_cast<float>((state = state * 1664525u + 1013904223u) >> 8) / 16777216.f;
    const int rank = c.task == "mr-disc-grading" ? 2 : 0;
    const Tensor a = fast.forward(in, rank), b = plain.forward(in, rank);
    ASSERT_EQ(a.shape, b.shape) << file;
    float scale = 0, diff = 0;
    for (std::size_t i = 0; i < a.data.size(); ++i) {
      scale = std::max(scale, std::fabs(b.data[i]));
      diff = std::max(diff, std::fabs(a.data[i] - b.data[i]));
    }
    EXPECT_LE(diff, 1e-4f * std::max(1.f, scale)) << file << ": largest difference " << diff << ", scale " << scale;
  }
}


// spine-cobb's --ensemble-reading split runs the networks of an ensemble one by one: each
// network's forward, optimised on its own, must be what the ensemble averages.
TEST(Model, EnsembleMembersAreWhatTheEnsembleAverages) {
  for (const char* file : {"xray-landmarks.pt", "xray-corners.pt"}) {
    const Model m = Model::load(shipped_model(file), {}, "cpu");
    ASSERT_EQ(m.member_count(), 2) << file;
    const auto& c = m.card();
    Tensor in({2, c.input_channels, c.patch_size[1], c.patch_size[0]});
    std::uint32_t state = 777;
    for (float& v : in.data) v = static_cast<float>((state = state * 1664525u + 1013904223u) >> 8) / 16777216.f;
    const Tensor whole = m.forward(in), a = m.forward_member(0, in), b = m.forward_member(1, in);
    ASSERT_EQ(a.shape, whole.shape) << file;
    ASSERT_EQ(b.shape, whole.shape) << file;
    float scale = 0, diff = 0, apart = 0;
    for (std::size_t i = 0; i < whole.data.size(); ++i) {
      scale = std::max(scale, std::fabs(whole.data[i]));
      diff = std::max(diff, std::fabs((a.data[i] + b.data[i]) / 2 - whole.data[i]));
      apart = std::max(apart, std::fabs(a.data[i] - b.data[i]));
    }
    EXPECT_LE(diff, 1e-4f * std::max(1.f, scale)) << file;
    EXPECT_GT(apart, 1e-3f * std::max(1.f, scale)) << file << ": the two networks should differ";
    EXPECT_THROW(m.forward_member(2, in), Error) << file;
  }
  const Model single = Model::load(test::test_models() / "pointwise2d.pt", {"test-pointwise", {"any"}, 2}, "cpu");
  EXPECT_EQ(single.member_count(), 0);
  EXPECT_THROW(single.forward_member(0, Tensor({1, 1, 4, 4})), Error);
}

}  // namespace
}  // namespace spine
