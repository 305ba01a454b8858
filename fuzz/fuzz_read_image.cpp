// libFuzzer target for spine's image readers: the input bytes become a file with the
// extension this target was built for (SPINE_FUZZ_EXT), which spine::read_image reads.
// A refusal (spine::Error) is the expected outcome for garbage; anything else (a crash,
// a sanitizer report, another exception type, a hang, memory past -rss_limit_mb) is a
// bug libFuzzer reports with the input that caused it.
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "spine/error.hpp"
#include "spine/io.hpp"

namespace {

const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    char tmpl[] = "/tmp/spine-fuzz-XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    if (!d) std::abort();
    // A small budget: a header that declares gigabytes must be refused, not allocated.
    spine::set_memory_budget(std::uint64_t{256} << 20);
    return std::filesystem::path(d);
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string ext = SPINE_FUZZ_EXT;
  const std::filesystem::path file = scratch() / ("input" + ext);
  if (ext == ".nii.gz") {
    // The fuzzer explores the NIfTI structure; the file it reads is that, gzipped.
    gzFile gz = gzopen(file.c_str(), "wb1");
    if (!gz) std::abort();
    if (size > 0) gzwrite(gz, data, static_cast<unsigned>(size));
    gzclose(gz);
  } else {
    std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const spine::LoadedImage img = spine::read_image(file);
    // A readable image must be what read_image promises: voxels for its size.
    if (img.image.voxels.size() != img.image.geometry.voxel_count()) std::abort();
  } catch (const spine::Error&) {
    // refused with a message: fine
  }
  return 0;
}
