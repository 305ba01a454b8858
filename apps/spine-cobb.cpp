// spine-cobb: Cobb angles and scoliosis grading on frontal radiographs (see spine::run_cobb).
#include "spine/commands/cobb_cmd.hpp"
#include "spine/log.hpp"
#include "spine/model.hpp"

int main(int argc, char** argv) {
  spine::CobbConfig config;
  auto model_versions = [] {
    std::vector<std::string> lines;
    for (const char* file : {"xray-spine-finder.pt", "xray-landmarks.pt", "xray-corners.pt", "xray-landmarks-int8.pt",
                             "xray-corners-int8.pt", "xray-level-anchors.pt"}) {
      try {
        const auto model = spine::shipped_model(file);
        const auto card = spine::Model::read_card(model);
        lines.push_back(card.name + " " + card.version + " (" + model.path.string() + ", SHA-256 verified)");
      } catch (const spine::Error& e) {
        lines.push_back(std::string(file) + ": unavailable (" + e.what() + ")");
      }
    }
    return lines;
  };
  return spine::run_main(
      argc, argv,
      {"spine-cobb", "Cobb angles, major curve and scoliosis grade from frontal (AP/PA) spine radiographs.",
       model_versions},
      [&](CLI::App& app) { config.register_cli(app); },
      [&] {
        spine::log::setup("spine-cobb", config.common.effective_log_level());
        spine::set_thread_count(config.common.threads);
        return spine::run_cobb(config).exit_status();
      });
}
