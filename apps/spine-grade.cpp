// spine-grade: degenerative grading per lumbar disc on sagittal MRI (see spine::run_grade).
#include "spine/commands/grade_cmd.hpp"
#include "spine/log.hpp"
#include "spine/model.hpp"

int main(int argc, char** argv) {
  spine::GradeConfig config;
  return spine::run_main(
      argc, argv,
      {"spine-grade", "Find and name the lumbar discs of sagittal MRI and grade each: Pfirrmann grade, Modic change, "
                      "endplate changes, spondylolisthesis, herniation, narrowing and bulging, with probabilities.",
       spine::grade_model_versions},
      [&](CLI::App& app) { config.register_cli(app); },
      [&] {
        spine::log::setup("spine-grade", config.common.effective_log_level());
        spine::set_thread_count(config.common.threads);
        return spine::run_grade(config).exit_status();
      });
}
