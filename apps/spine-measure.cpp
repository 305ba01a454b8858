// spine-measure: measurements from spine label maps (see spine::run_measure).
#include "spine/commands/measure_cmd.hpp"
#include "spine/log.hpp"
#include "spine/model.hpp"

int main(int argc, char** argv) {
  spine::MeasureCommandConfig config;
  return spine::run_main(
      argc, argv,
      {"spine-measure", "Measure vertebral body heights and Genant fracture grades, trabecular attenuation (CT), "
                        "discs, lordosis, kyphosis, coronal Cobb angle and canal size from spine label maps.",
       spine::spine_seg_model_versions},
      [&](CLI::App& app) { config.register_cli(app); },
      [&] {
        spine::log::setup("spine-measure", config.common.effective_log_level());
        spine::set_thread_count(config.common.threads);
        return spine::run_measure(config).exit_status();
      });
}
