// spine-detect (see spine::run_spine_detect).
#include "spine/commands/spine_seg_cmd.hpp"
#include "spine/log.hpp"
#include "spine/model.hpp"

int main(int argc, char** argv) {
  spine::DetectCommandConfig config;
  return spine::run_main(
      argc, argv,
      {"spine-detect", "Finds and names every vertebra in CT and MRI volumes: centroids as JSON and 3D Slicer markups.",
       spine::spine_seg_model_versions},
      [&](CLI::App& app) { config.register_cli(app); },
      [&] {
        spine::log::setup("spine-detect", config.common.effective_log_level());
        spine::set_thread_count(config.common.threads);
        return spine::run_spine_detect(config).exit_status();
      });
}
