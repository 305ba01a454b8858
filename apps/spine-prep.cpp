// spine-prep: preprocessing stages as a command (see spine::run_prep).
#include "spine/commands/prep.hpp"
#include "spine/log.hpp"
#include "spine/model.hpp"

int main(int argc, char** argv) {
  spine::PrepConfig config;
  return spine::run_main(
      argc, argv,
      {"spine-prep", "Preprocess spine images: reorient, resample, N4, CT window, CLAHE, normalise; "
                     "also converts DICOM series to NIfTI.", {}},
      [&](CLI::App& app) { config.register_cli(app); },
      [&] {
        spine::log::setup("spine-prep", config.common.effective_log_level());
        spine::set_thread_count(config.common.threads);
        return spine::run_prep(config).exit_status();
      });
}
