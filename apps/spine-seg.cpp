// spine-seg (see spine::run_spine_seg).
#include "spine/commands/spine_seg_cmd.hpp"
#include "spine/log.hpp"
#include "spine/model.hpp"

int main(int argc, char** argv) {
  spine::SegCommandConfig config;
  return spine::run_main(
      argc, argv,
      {"spine-seg", "Segments vertebrae (VerSe labels) and intervertebral discs in CT and MRI volumes, coarse to fine.",
       spine::spine_seg_model_versions},
      [&](CLI::App& app) { config.register_cli(app); },
      [&] {
        spine::log::setup("spine-seg", config.common.effective_log_level());
        spine::set_thread_count(config.common.threads);
        return spine::run_spine_seg(config).exit_status();
      });
}
