# Writes spine/version.hpp with the project version and the current git revision.
# Runs in script mode at every build (see CMakeLists.txt), so --version never shows a
# stale revision; configure_file leaves the header untouched when nothing changed.
execute_process(COMMAND git rev-parse --short=12 HEAD
  WORKING_DIRECTORY ${SOURCE_DIR}
  OUTPUT_VARIABLE SPINE_GIT_REVISION OUTPUT_STRIP_TRAILING_WHITESPACE
  ERROR_QUIET RESULT_VARIABLE _git_rc)
if(NOT _git_rc EQUAL 0 OR SPINE_GIT_REVISION STREQUAL "")
  set(SPINE_GIT_REVISION "unknown")
endif()
execute_process(COMMAND git status --porcelain --untracked-files=no
  WORKING_DIRECTORY ${SOURCE_DIR}
  OUTPUT_VARIABLE _git_dirty OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT _git_dirty STREQUAL "")
  set(SPINE_GIT_REVISION "${SPINE_GIT_REVISION}-dirty")
endif()
configure_file(${SOURCE_DIR}/cmake/version.hpp.in ${OUTPUT_FILE} @ONLY)
