// spine-phantom: synthetic spine studies with known ground truth (see spine::run_phantom).
#include "spine/commands/phantom_cmd.hpp"
#include "spine/log.hpp"
#include "spine/model.hpp"

int main(int argc, char** argv) {
  spine::PhantomCommandConfig config;
  return spine::run_main(
      argc, argv,
      {"spine-phantom", "Make synthetic spine CT / MR volumes with label maps, or frontal radiographs "
                        "with landmarks and exact Cobb angles.", {}},
      [&](CLI::App& app) { config.register_cli(app); },
      [&] {
        spine::log::setup("spine-phantom", config.common.effective_log_level());
        spine::set_thread_count(config.common.threads);
        return spine::run_phantom(config).exit_status();
      });
}
