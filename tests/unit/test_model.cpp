// The model loader: card parsing and checks, rejection of mismatching or broken models.
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

}  // namespace
}  // namespace spine
