// Output and model integrity, run as a user would: a locked output folder, two runs at
// once, SIGTERM and SIGKILL in the middle of a batch and --resume after them, damaged
// study outputs, tampered shipped models and models whose outputs are garbage.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <nlohmann/json.hpp>

#include "cmd_util.hpp"
#include "spine/batch.hpp"

namespace spine {
namespace {

using test::bin;
using test::make_ct_batch;
using test::spawn;
using test::wait_exit;
using test::q;
using test::run_command;
using test::TempDir;
namespace fs = std::filesystem;

bool wait_for(const fs::path& p, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (fs::exists(p)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::vector<std::string> hidden_work(const fs::path& out) {
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(out)) {
    const std::string n = e.path().filename().string();
    if (n[0] == '.' && n != kLockFile) left.push_back(n);
  }
  return left;
}

// While another process holds a study's lock (another run is working on it), a run into
// the same folder skips that study and says so; once released, the same command does it.
TEST(Integrity, AStudyLockedByAnotherRunIsSkipped) {
  TempDir dir;
  const fs::path ct = test::make_ct_phantom(dir);
  fs::create_directories(dir / "out");
  const int fd = ::open((dir / "out" / ".image.lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  ASSERT_EQ(::pwrite(fd, "4242", 4, 0), 4);
  const auto r = run_command(bin("spine-prep") + " " + q(ct) + " -o " + q(dir / "out"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("image: skipped, being processed by another run (process 4242)"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(dir / "out" / "image"));
  ::close(fd);
  const auto again = run_command(bin("spine-prep") + " " + q(ct) + " -q -o " + q(dir / "out"));
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_TRUE(study_outputs_complete(dir / "out" / "image"));
  EXPECT_FALSE(fs::exists(dir / "out" / ".image.lock"));  // removed when released
}

// Two runs started together into one folder share the work: each study is done by one of
// them; the other skips it while it is locked or finds its outputs and refuses to replace
// them (exit 3). No output is replaced, mixed or left half-written, both logs survive, and
// the cohort table, rebuilt by whichever run ends last, has every study.
TEST(Integrity, TwoRunsAtOnceNeitherClobbersTheOther) {
  TempDir dir;
  const fs::path in = make_ct_batch(dir, 4);
  const std::string cmd = bin("spine-seg") + " " + q(in) + " --threads 1 -o " + q(dir / "out");
  const pid_t a = spawn(cmd, dir / "a.txt");
  const pid_t b = spawn(cmd, dir / "b.txt");
  std::vector<int> codes{wait_exit(a), wait_exit(b)};
  const std::string both = test::read_file(dir / "a.txt") + test::read_file(dir / "b.txt");
  for (int c : codes) EXPECT_TRUE(c == 0 || c == 3) << both;
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(study_outputs_complete(dir / "out" / ("s" + std::to_string(i)))) << i;
  EXPECT_TRUE(hidden_work(dir / "out").empty());
  int logs = 0;
  for (const auto& e : fs::directory_iterator(dir / "out")) logs += e.path().extension() == ".log";
  EXPECT_EQ(logs, 2);
  const std::string csv = test::read_file(dir / "out" / "seg.csv");
  for (int i = 0; i < 4; ++i) EXPECT_NE(csv.find("\ns" + std::to_string(i) + ",ct,"), std::string::npos) << csv;
}

// SIGTERM in the middle of a batch: the current study is finished, the rest are not run,
// the summary says so and the exit status is 5; --resume then completes the batch.
TEST(Integrity, SigtermFinishesTheCurrentStudyAndResumeCompletes) {
  TempDir dir;
  const fs::path in = make_ct_batch(dir);
  const std::string cmd = bin("spine-seg") + " " + q(in) + " --threads 1 -o " + q(dir / "out");
  const pid_t p = spawn(cmd, dir / "log.txt");
  ASSERT_TRUE(wait_for(dir / "out" / "s0", 120));
  ::kill(p, SIGTERM);
  bool signalled = true;
  const int code = wait_exit(p, &signalled);
  const std::string log = test::read_file(dir / "log.txt");
  EXPECT_FALSE(signalled) << log;
  EXPECT_EQ(code, 5) << log;
  EXPECT_NE(log.find("not run (interrupted)"), std::string::npos) << log;
  EXPECT_TRUE(hidden_work(dir / "out").empty());
  int done = 0;
  for (int i = 0; i < 6; ++i) {
    const fs::path s = dir / "out" / ("s" + std::to_string(i));
    if (fs::exists(s)) {
      EXPECT_TRUE(study_outputs_complete(s)) << s;
      ++done;
    }
  }
  EXPECT_LT(done, 6);
  const auto r = run_command(cmd + " --resume");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (int i = 0; i < 6; ++i) EXPECT_TRUE(study_outputs_complete(dir / "out" / ("s" + std::to_string(i)))) << i;
}

// SIGKILL leaves a hidden work folder; the next run removes it, --resume skips what was
// complete, and the label maps come out byte-identical to an uninterrupted run's.
TEST(Integrity, KillThenResumeGivesTheSameOutputs) {
  TempDir dir;
  const fs::path in = make_ct_batch(dir);
  const std::string cmd = bin("spine-seg") + " " + q(in) + " --threads 1";
  const pid_t p = spawn(cmd + " -q -o " + q(dir / "out"), dir / "log.txt");
  ASSERT_TRUE(wait_for(dir / "out" / "s0", 120));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::kill(p, SIGKILL);
  bool signalled = false;
  wait_exit(p, &signalled);
  EXPECT_TRUE(signalled);
  const auto r = run_command(cmd + " --resume -v -o " + q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("s0: skipped"), std::string::npos) << r.output;
  EXPECT_TRUE(hidden_work(dir / "out").empty());
  ASSERT_EQ(run_command(cmd + " -q -o " + q(dir / "ref")).exit_code, 0);
  for (int i = 0; i < 6; ++i) {
    const std::string s = "s" + std::to_string(i);
    EXPECT_EQ(test::read_file(dir / "out" / s / "labels.nii.gz"), test::read_file(dir / "ref" / s / "labels.nii.gz")) << s;
  }
}

// A study output damaged after the fact (a truncated cobb.json) is not trusted by
// --resume: the study is run again and the cohort table is whole.
TEST(Integrity, ResumeRedoesADamagedStudy) {
  TempDir dir;
  ASSERT_EQ(run_command(bin("spine-phantom") + " --kind xray --pixel 1 -q -o " + q(dir / "ph") + " --name xr").exit_code, 0);
  const std::string cmd = bin("spine-cobb") + " " + q(dir / "ph" / "xr" / "image.png") + " --threads 2 --no-overlay -o " +
                          q(dir / "out");
  ASSERT_EQ(run_command(cmd + " -q").exit_code, 0);
  const fs::path json = dir / "out" / "image" / "cobb.json";
  const std::string whole = test::read_file(json);
  { std::ofstream(json, std::ios::binary) << whole.substr(0, whole.size() / 2); }
  EXPECT_FALSE(study_outputs_complete(dir / "out" / "image"));
  const auto r = run_command(cmd + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("incomplete or damaged"), std::string::npos) << r.output;
  EXPECT_NO_THROW(nlohmann::json::parse(test::read_file(json)));
  const std::string csv = test::read_file(dir / "out" / "cobb.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 2) << csv;
}

// A shipped model with one flipped byte, or with its card rewritten (limitations taken
// out), is refused before it is loaded: by the command and by --version.
TEST(Integrity, TamperedShippedModelsAreRefused) {
  TempDir dir;
  ASSERT_EQ(run_command(bin("spine-phantom") + " --kind xray --pixel 1 -q -o " + q(dir / "ph") + " --name xr").exit_code, 0);
  const fs::path shipped = fs::path(SPINE_BIN_DIR) / ".." / ".." / "models";
  for (const char* variant : {"flip", "card"}) {
    const fs::path models = dir / (std::string("models-") + variant);
    fs::create_directories(models);
    for (const char* f : {"xray-landmarks.pt", "xray-corners.pt", "xray-spine-finder.pt"})
      fs::copy_file(shipped / f, models / f);
    const fs::path target = models / "xray-landmarks.pt";
    if (std::string(variant) == "flip") {
      std::string bytes = test::read_file(target);
      bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
      std::ofstream(target, std::ios::binary) << bytes;
    } else {
      // Rebuild the archive with the card's limitations removed, as an adversary would.
      const std::string py =
          "import json,sys,zipfile\n"
          "src=sys.argv[1]; z=zipfile.ZipFile(src); items=[(i,z.read(i.filename)) for i in z.infolist()]; z.close()\n"
          "out=zipfile.ZipFile(src,'w')\n"
          "for i,d in items:\n"
          "    if i.filename.endswith('extra/model_card.json'):\n"
          "        c=json.loads(d); c.pop('limitations',None); d=json.dumps(c).encode()\n"
          "    out.writestr(i,d)\n"
          "out.close()\n";
      std::ofstream(dir / "recard.py") << py;
      ASSERT_EQ(run_command("/usr/bin/python3 " + q(dir / "recard.py") + " " + q(target)).exit_code, 0);
    }
    const std::string env = "SPINE_MODELS_DIR=" + q(models) + " ";
    const auto r = run_command(env + bin("spine-cobb") + " " + q(dir / "ph" / "xr" / "image.png") + " -o " +
                               q(dir / ("out-" + std::string(variant))));
    EXPECT_EQ(r.exit_code, 2) << variant << ": " << r.output;
    EXPECT_NE(r.output.find("xray-landmarks.pt: checksum mismatch"), std::string::npos) << variant << ": " << r.output;
    EXPECT_FALSE(fs::exists(dir / ("out-" + std::string(variant)) / "image")) << variant;
    const auto v = run_command(env + bin("spine-cobb") + " --version");
    EXPECT_NE(v.output.find("xray-landmarks.pt: unavailable"), std::string::npos) << v.output;
    EXPECT_NE(v.output.find("SHA-256 verified"), std::string::npos) << v.output;  // the other two
  }
}

// A user's own model is accepted with --model and its checksum logged; when its output
// is NaN or empty the study fails with that reason instead of writing nulls or dividing
// by zero, and no cobb.json is left.
TEST(Integrity, ModelsWithGarbageOutputsFailClearly) {
  TempDir dir;
  ASSERT_EQ(run_command(bin("spine-phantom") + " --kind xray --pixel 1 -q -o " + q(dir / "ph") + " --name xr").exit_code, 0);
  for (const auto& [file, expected] : {std::pair<std::string, std::string>{"nan_landmarks.pt", "NaN or infinite"},
                                       {"empty_landmarks.pt", "model output is empty"}}) {
    const auto r = run_command(bin("spine-cobb") + " " + q(dir / "ph" / "xr" / "image.png") + " --no-spine-finder --model " +
                               q(test::test_models() / file) + " -o " + q(dir / file));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(expected), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("your own model"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("SHA-256 " + sha256_file(test::test_models() / file)), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(dir / file / "image")) << file;
  }
}

}  // namespace
}  // namespace spine
