// Study discovery and the batch runner: per-study work folders renamed into place on
// success, --force / --resume, provenance records, progress and a summary.
#include "spine/batch.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstring>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "spine/bids.hpp"
#include "spine/io.hpp"
#include "spine/log.hpp"
#include "spine/pseudonyms.hpp"
#include "spine/version.hpp"

#include <spdlog/sinks/sink.h>

namespace fs = std::filesystem;

namespace spine {
namespace {

bool is_list_file(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".txt" || ext == ".lst" || ext == ".list";
}

bool hidden(const fs::path& p) { return p.filename().string().rfind('.', 0) == 0; }

void add_path(const fs::path& p, std::vector<Study>& out) {
  out.push_back({study_name_of(p), p});
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

std::vector<fs::path> sorted_entries(const fs::path& dir, bool directories) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (hidden(e.path())) continue;
    if (e.is_directory(ec) == directories) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A BIDS dataset root: dataset_description.json, or a subject folder sub-* laid out as
// BIDS (sub-*/anat or sub-*/ses-*/anat), so that a plain folder of DICOM series that
// happen to be called sub-01, sub-02 is still a folder of series.
bool is_bids_root(const fs::path& dir) {
  if (fs::is_regular_file(dir / "dataset_description.json")) return true;
  for (const auto& d : sorted_entries(dir, true)) {
    if (!starts_with(d.filename().string(), "sub-")) continue;
    if (fs::is_directory(d / "anat")) return true;
    for (const auto& ses : sorted_entries(d, true))
      if (starts_with(ses.filename().string(), "ses-") && fs::is_directory(ses / "anat")) return true;
  }
  return false;
}

// The anatomical images of a BIDS dataset that the commands work on:
// sub-*/[ses-*/]anat/*_T1w, *_T2w and *_ct images (NIfTI, or a DICOM series folder of
// that name). Derivatives, sourcedata and other modalities are left alone. Study names
// are the BIDS file names without extension (sub-01_ses-2_T2w), unique in a dataset.
void add_bids(const fs::path& root, std::vector<Study>& out) {
  const std::size_t before = out.size();
  for (const auto& sub : sorted_entries(root, true)) {
    if (!starts_with(sub.filename().string(), "sub-")) continue;
    std::vector<fs::path> sessions;
    for (const auto& ses : sorted_entries(sub, true))
      if (starts_with(ses.filename().string(), "ses-")) sessions.push_back(ses);
    if (sessions.empty()) sessions.push_back(sub);
    for (const auto& ses : sessions) {
      const fs::path anat = ses / "anat";
      if (!fs::is_directory(anat)) continue;
      std::vector<fs::path> candidates = sorted_entries(anat, false);
      for (const auto& d : sorted_entries(anat, true)) candidates.push_back(d);
      for (const auto& f : candidates) {
        const std::string name = study_name_of(f);
        const auto us = name.rfind('_');
        const std::string suffix = us == std::string::npos ? "" : name.substr(us + 1);
        if (suffix != "T1w" && suffix != "T2w" && suffix != "ct" && suffix != "CT") continue;
        if (fs::is_directory(f) ? is_dicom_series_dir(f) : has_image_extension(f)) out.push_back({name, f});
      }
    }
  }
  if (out.size() == before)
    throw input_error(root.string() + ": a BIDS dataset without sub-*/[ses-*/]anat/*_T1w, *_T2w or *_ct images");
}

// nnU-Net's channel suffix: CASE_0000.nii.gz is channel 0 of study CASE. Returns the
// channel (-1 when the name has none) and sets `base`.
int nnunet_channel(const std::string& name, std::string& base) {
  if (name.size() < 6 || name[name.size() - 5] != '_') return -1;
  for (std::size_t i = name.size() - 4; i < name.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(name[i]))) return -1;
  base = name.substr(0, name.size() - 5);
  return std::stoi(name.substr(name.size() - 4));
}

// DICOM series below a folder that is not itself one (patient / study / series trees),
// named by their path under `root` with '_' between the folder names; depth-limited so a
// stray link cannot make the walk endless.
void add_nested_series(const fs::path& root, const fs::path& dir, int depth, std::vector<Study>& out) {
  if (depth > 4) return;
  for (const auto& d : sorted_entries(dir, true)) {
    if (is_dicom_series_dir(d)) {
      std::string name = fs::relative(d, root).string();
      std::replace(name.begin(), name.end(), '/', '_');
      out.push_back({name, d});
    } else {
      add_nested_series(root, d, depth + 1, out);
    }
  }
}

void add_directory(const fs::path& dir, std::vector<Study>& out) {
  if (is_bids_root(dir)) {
    add_bids(dir, out);
    return;
  }
  std::vector<fs::path> files, subdirs;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (hidden(e.path())) continue;
    // Entries that cannot be resolved (a symlink loop, a dangling link) are not skipped
    // silently when they look like images: they become studies that fail with a reason.
    std::error_code ec;
    if (e.is_directory(ec)) subdirs.push_back(e.path());
    else if (has_image_extension(e.path()) && (e.is_regular_file(ec) || ec || e.is_symlink())) files.push_back(e.path());
  }
  // Checked once: it reads the folder's files.
  const bool dir_is_series = is_dicom_series_dir(dir);
  // A folder of DICOM slices with no other images is one study.
  if (files.empty() && subdirs.empty() && dir_is_series) {
    add_path(dir, out);
    return;
  }
  std::sort(files.begin(), files.end());
  std::sort(subdirs.begin(), subdirs.end());
  const std::size_t before = out.size();
  std::set<std::string> names;
  for (const auto& f : files) names.insert(study_name_of(f));
  int extra_channels = 0;
  for (const auto& f : files) {
    // .dcm slices of a series lying directly in the folder belong to that series.
    if (f.extension() == ".dcm" && dir_is_series) continue;
    std::string base;
    const int channel = nnunet_channel(study_name_of(f), base);
    if (channel == 0) {
      out.push_back({base, f});
    } else if (channel > 0 && names.count(base + "_0000")) {
      ++extra_channels;  // the models take one channel: _0000
    } else {
      add_path(f, out);
    }
  }
  if (extra_channels > 0)
    log::info("{}: {} further nnU-Net channel file(s) (_0001...) left out: the models read channel _0000",
              dir.string(), extra_channels);
  for (const auto& s : subdirs) {
    if (is_dicom_series_dir(s)) add_path(s, out);
    else add_nested_series(dir, s, 1, out);
  }
  if (out.size() == before && dir_is_series) add_path(dir, out);
  if (out.size() == before) throw input_error(dir.string() + ": no images or DICOM series found");
}

}  // namespace

// A list file must be text: a binary file given by mistake would otherwise become a
// batch of studies named after its bytes.
void check_text_list(const fs::path& p, const std::string& bytes) {
  std::size_t line = 1;
  for (unsigned char c : bytes) {
    if (c == '\n') ++line;
    else if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f)
      throw input_error(p.string() + ": not a text list of paths (control character on line " + std::to_string(line) + ")");
  }
}

std::vector<Study> discover_studies(const std::vector<std::string>& inputs) {
  std::vector<Study> studies;
  for (const auto& input : inputs) {
    const fs::path p(input);
    std::error_code ec;
    const auto st = fs::status(p, ec);
    if (ec && ec != std::errc::no_such_file_or_directory)
      throw input_error(input + ": cannot open (" + ec.message() + ")");
    if (!fs::exists(st)) throw input_error(input + ": no such file or directory");
    if (fs::is_directory(st)) {
      add_directory(p, studies);
    } else if (is_list_file(p)) {
      if (!fs::is_regular_file(st)) throw input_error(input + ": not a regular file");
      std::ifstream file(p, std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
      check_text_list(p, bytes);
      std::istringstream in(bytes);
      std::string line;
      std::size_t listed = 0;
      while (std::getline(in, line)) {
        line.erase(0, line.find_first_not_of(" \t\r"));
        line.erase(line.find_last_not_of(" \t\r") + 1);
        if (line.empty() || line[0] == '#') continue;
        fs::path entry(line);
        if (entry.is_relative()) entry = p.parent_path() / entry;
        // Missing entries stay in the batch and fail there, so the rest still runs.
        add_path(entry, studies);
        ++listed;
      }
      if (listed == 0) throw input_error(input + ": list file names no studies");
    } else {
      add_path(p, studies);
    }
  }
  // Files with the same name in different folders (case01/image.png, case02/image.png)
  // are told apart by their folder: case01_image, case02_image.
  std::map<std::string, int> count;
  for (const auto& s : studies) ++count[s.name];
  for (auto& s : studies) {
    if (count[s.name] > 1 && !s.path.parent_path().filename().empty())
      s.name = s.path.parent_path().filename().string() + "_" + s.name;
  }
  std::set<std::string> names;
  for (const auto& s : studies) {
    if (s.name.empty()) throw input_error(s.path.string() + ": cannot derive a study name");
    if (!names.insert(s.name).second)
      throw input_error("two inputs have the same study name '" + s.name + "' (" + s.path.string() + ")");
  }
  return studies;
}

int BatchSummary::count(StudyStatus s) const {
  return static_cast<int>(std::count_if(results.begin(), results.end(),
                                        [&](const StudyResult& r) { return r.status == s; }));
}

ExitStatus BatchSummary::exit_status() const {
  if (interrupted) return ExitStatus::kInterrupted;
  const int failed = count(StudyStatus::kFailed);
  if (failed == 0) return ExitStatus::kOk;
  return results.size() == 1 ? ExitStatus::kInput : ExitStatus::kSomeFailed;
}

std::string iso_time_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::ostringstream s;
  s << std::put_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  return s.str();
}

namespace {

nlohmann::json input_record(const fs::path& p, bool anonymised) {
  nlohmann::json j = anonymised ? nlohmann::json{{"path", nullptr}, {"path_withheld", "--anonymise-names"}}
                                : nlohmann::json{{"path", p.string()}};
  // Where a list of failed or flagged studies finds it again, whatever folder the next
  // run starts in.
  if (!anonymised && p.is_relative()) j["absolute_path"] = fs::absolute(p).lexically_normal().string();
  if (fs::is_directory(p)) {
    // A series: hash of the sorted per-file hashes.
    std::vector<std::pair<std::string, std::string>> files;
    for (const auto& e : fs::directory_iterator(p)) {
      if (e.is_regular_file()) files.emplace_back(e.path().filename().string(), sha256_file(e.path()));
    }
    std::sort(files.begin(), files.end());
    std::string joined;
    for (const auto& [name, hash] : files) joined += name + " " + hash + "\n";
    j["files"] = files.size();
    j["sha256"] = sha256_bytes(joined);
  } else {
    j["sha256"] = sha256_file(p);
  }
  return j;
}

// Lists every file of a finished work folder with its size and SHA-256, so that --resume
// can tell a complete study from one damaged after the fact.
nlohmann::json output_records(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  nlohmann::json out = nlohmann::json::array();
  for (const auto& f : files)
    out.push_back({{"file", fs::relative(f, dir).string()}, {"bytes", fs::file_size(f)}, {"sha256", sha256_file(f)}});
  return out;
}

// An exclusive flock held while a run rewrites the cohort files (tables, report) of
// OUTDIR, so runs that end together (shards into one folder) take turns. The kernel drops
// it when the process ends in any way, so a dead run never blocks the next.
class FolderLock {
 public:
  explicit FolderLock(const fs::path& dir) {
    const fs::path file = dir / kLockFile;
    fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw input_error(file.string() + ": cannot create the output folder's lock file (" + std::strerror(errno) + ")");
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) {
        ::close(fd_);
        throw input_error(file.string() + ": cannot lock the output folder (" + std::strerror(errno) + ")");
      }
    }
  }
  ~FolderLock() { ::close(fd_); }
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

 private:
  int fd_ = -1;
};

// The lock on one study of an output folder, OUTDIR/.NAME.lock, held while a run works on
// that study: runs and shards into one folder never work on the same study at once.
// The file is removed on release; a run that locked a file just removed by another
// (its inode no longer at the path) tries again, so two runs never both hold a study.
class StudyLock {
 public:
  // False when another process holds the study; `holder` then names it.
  bool try_acquire(const fs::path& file, std::string* holder) {
    for (int attempt = 0; attempt < 100; ++attempt) {
      const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0) throw input_error(file.string() + ": cannot create the study's lock file (" + std::strerror(errno) + ")");
      if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = {};
        const auto n = ::pread(fd, pid, sizeof pid - 1, 0);
        ::close(fd);
        if (holder) *holder = n > 0 ? "process " + std::string(pid, static_cast<std::size_t>(n)) : "another process";
        return false;
      }
      struct stat held {}, now {};
      if (::fstat(fd, &held) == 0 && ::stat(file.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
          held.st_dev == now.st_dev) {
        fd_ = fd;
        file_ = file;
        const std::string me = std::to_string(::getpid());
        if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) < 0) {
          // The PID is only for the message another run shows; the lock holds regardless.
        }
        return true;
      }
      ::close(fd);  // removed by its previous holder after we opened it: try the new file
    }
    throw input_error(file.string() + ": cannot lock the study (its lock file keeps changing)");
  }
  ~StudyLock() { release(); }
  void release() {
    if (fd_ < 0) return;
    std::error_code ec;
    fs::remove(file_, ec);  // before unlocking: see try_acquire
    ::close(fd_);
    fd_ = -1;
  }
  StudyLock() = default;
  StudyLock(const StudyLock&) = delete;
  StudyLock& operator=(const StudyLock&) = delete;

 private:
  int fd_ = -1;
  fs::path file_;
};

fs::path study_lock_file(const fs::path& dir, const std::string& study) { return dir / ("." + study + ".lock"); }

// What a run that died (SIGKILL, power loss) left of one study: its work folder
// ".NAME.partial-PID", and ".NAME.old-PID", the previous output a dying --force run had
// set aside (restored when NAME is missing, removed otherwise). Called only while holding
// the study's lock, so nothing found is another live run's work.
void clean_stale_study(const fs::path& dir, const std::string& study, int& removed, int& restored) {
  std::vector<fs::path> entries;
  const std::string partial = "." + study + ".partial-", old = "." + study + ".old-";
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(partial, 0) == 0 || name.rfind(old, 0) == 0) entries.push_back(e.path());
  }
  std::error_code ec;
  for (const auto& p : entries) {
    if (p.filename().string().rfind(partial, 0) == 0) {
      fs::remove_all(p, ec);
      ++removed;
    } else if (!fs::exists(dir / study)) {
      fs::rename(p, dir / study, ec);
      ++restored;
    } else {
      fs::remove_all(p, ec);
      ++removed;
    }
  }
}

// Every study with leftovers of a dead run, whichever run it belongs to: cleaned when its
// lock can be had (a live run holding it is still working on it). Returns the studies
// left as they were because another run held them, to clean once this run holds them.
std::set<std::string> clean_stale_work(const fs::path& dir) {
  std::set<std::string> studies;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] != '.') continue;
    for (const char* tag : {".partial-", ".old-"}) {
      const auto at = name.rfind(tag);
      if (at != std::string::npos && at > 1) studies.insert(name.substr(1, at - 1));
    }
  }
  int removed = 0, restored = 0;
  std::set<std::string> held;
  for (const auto& s : studies) {
    StudyLock lock;
    if (lock.try_acquire(study_lock_file(dir, s), nullptr)) clean_stale_study(dir, s, removed, restored);
    else held.insert(s);
  }
  if (removed + restored > 0)
    log::warn("{}: removed {} work folder(s) left by interrupted runs, restored {} previous output(s)", dir.string(),
              removed, restored);
  return held;
}

// Temporary files of cohort files (".cobb.csv.tmp-PID") that a dead run left; called
// under the folder lock, which every writer of those files holds.
void clean_stale_cohort_files(const fs::path& dir) {
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (!name.empty() && name[0] == '.' && name.find(".tmp-") != std::string::npos && e.is_regular_file())
      stale.push_back(e.path());
  }
  std::error_code ec;
  for (const auto& p : stale) fs::remove(p, ec);
}

// SIGINT / SIGTERM: the first asks the batch to stop after the current study, the second
// abandons it (default action; its work folder is removed by the next run).
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) {
  if (g_stop_signal != 0) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_stop_signal = sig;
  const char msg[] = "\ninterrupted: finishing the current study, then stopping (signal again to abandon it)\n";
  const auto written = ::write(2, msg, sizeof msg - 1);
  (void)written;
}

class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

// rename() that fails instead of replacing an existing target.
void rename_no_replace(const fs::path& from, const fs::path& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST || errno == ENOTEMPTY)
      throw input_error(to.string() + ": output appeared while this study ran; not replaced (use --force)");
    throw input_error(to.string() + ": cannot move the finished outputs into place (" + std::strerror(errno) + ")");
  }
}

class Progress {
 public:
  explicit Progress(std::size_t total) : total_(total), bar_(::isatty(2) && spdlog::default_logger()->sinks().front()->level() <= spdlog::level::info) {}
  void begin(std::size_t index, const std::string& name) {
    if (!bar_) return;
    const int width = 30;
    const int filled = static_cast<int>(width * index / std::max<std::size_t>(total_, 1));
    log::set_status("[" + std::string(filled, '#') + std::string(width - filled, '.') + "] " + std::to_string(index) +
                    "/" + std::to_string(total_) + " " + name);
  }
  void clear_line() {
    if (bar_) log::set_status("");
  }
  bool bar() const { return bar_; }

 private:
  std::size_t total_;
  bool bar_;
};

// OUTDIR/failures/<study>.json while a study's last run failed (and it has no complete
// outputs), removed once it succeeds: the cohort's failed list, whichever run failed it.
void record_outcome(const BatchOptions& options, const Study& study, const StudyResult& result,
                    const fs::path& final_dir) {
  const fs::path record = options.output_dir / kFailuresDir / (study.name + ".json");
  std::error_code ec;
  if (result.status == StudyStatus::kDone) {
    fs::remove(record, ec);
  } else if (result.status == StudyStatus::kFailed && !study_outputs_complete(final_dir)) {
    fs::create_directories(record.parent_path(), ec);
    const bool anonymised = !options.name_map.empty();
    nlohmann::json j{{"study", study.name},
                     {"input", anonymised || study.path.empty()
                                   ? nlohmann::json(nullptr)
                                   : nlohmann::json(fs::absolute(study.path, ec).lexically_normal().string())},
                     {"error", result.message},
                     {"tool", options.tool},
                     {"time", iso_time_now()}};
    try {
      write_text_file(record, j.dump(2) + "\n");
    } catch (const std::exception& e) {
      log::warn("{}: cannot record the failure ({})", record.string(), e.what());  // still in the log and the summary
    }
  }
}

}  // namespace

std::vector<std::string> complete_studies(const fs::path& out_dir, const std::string& result_file) {
  std::vector<std::string> studies;
  for (const auto& e : fs::directory_iterator(out_dir)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.' || !e.is_directory()) continue;
    if (fs::exists(e.path() / result_file) && study_outputs_complete(e.path())) studies.push_back(name);
  }
  std::sort(studies.begin(), studies.end());
  return studies;
}

bool study_outputs_complete(const fs::path& dir) {
  try {
    std::ifstream in(dir / kProvenanceFile);
    if (!in) return false;
    const auto prov = nlohmann::json::parse(in);
    if (!prov.is_object()) return false;
    if (!prov.contains("outputs")) return true;  // written before outputs were listed
    for (const auto& o : prov.at("outputs")) {
      const fs::path f = dir / o.at("file").get<std::string>();
      std::error_code ec;
      if (!fs::is_regular_file(f, ec) || fs::file_size(f, ec) != o.at("bytes").get<std::uintmax_t>()) return false;
    }
    return true;
  } catch (const std::exception&) {
    return false;  // unparsable provenance: not complete
  }
}

int shard_of(const std::string& study_name, int shard_count) {
  if (shard_count < 1) throw usage_error("the shard count must be at least 1");
  const std::string h = sha256_bytes(study_name);
  // The first 15 hex digits (60 bits): well inside an unsigned 64-bit integer.
  const unsigned long long v = std::stoull(h.substr(0, 15), nullptr, 16);
  return static_cast<int>(v % static_cast<unsigned long long>(shard_count)) + 1;
}

std::pair<int, int> parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  int k = 0, n = 0;
  try {
    std::size_t used_k = 0, used_n = 0;
    if (slash == std::string::npos) throw std::invalid_argument("no slash");
    k = std::stoi(text.substr(0, slash), &used_k);
    n = std::stoi(text.substr(slash + 1), &used_n);
    if (used_k != slash || used_n != text.size() - slash - 1) throw std::invalid_argument("trailing text");
  } catch (const std::exception&) {
    throw usage_error("--shard " + text + ": expected K/N with whole numbers, e.g. 2/8");
  }
  if (n < 1 || k < 1 || k > n) throw usage_error("--shard " + text + ": K must be between 1 and N");
  return {k, n};
}

std::vector<FailedStudy> failed_studies(const fs::path& out_dir) {
  std::vector<FailedStudy> out;
  const fs::path dir = out_dir / kFailuresDir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".json") continue;
    try {
      std::ifstream in(e.path());
      const auto j = nlohmann::json::parse(in);
      FailedStudy f{j.at("study").get<std::string>(), j.value("input", ""), j.value("error", ""),
                    j.value("tool", ""), j.value("time", "")};
      // A study that has complete outputs (run again since) has not failed.
      if (!study_outputs_complete(out_dir / f.study)) out.push_back(std::move(f));
    } catch (const std::exception&) {
      log::warn("{}: unreadable failure record, left out", e.path().string());
    }
  }
  std::sort(out.begin(), out.end(), [](const FailedStudy& a, const FailedStudy& b) { return a.study < b.study; });
  return out;
}

BatchSummary run_batch(const std::vector<Study>& all_studies, const BatchOptions& options,
                       const StudyProcessor& process) {
  std::vector<Study> studies;
  if (options.cohort_files_only) {
    // Nothing to run: the cohort files below are rebuilt from what the folder holds.
  } else if (options.shard_count > 0) {
    for (const auto& s : all_studies)
      if (shard_of(s.name, options.shard_count) == options.shard_index) studies.push_back(s);
  } else {
    studies = all_studies;
  }
  std::error_code ec;
  fs::create_directories(options.output_dir, ec);
  if (ec || !fs::is_directory(options.output_dir))
    throw input_error(options.output_dir.string() + ": cannot create output directory");
  const bool anonymise = !options.name_map.empty();
  std::vector<std::string> pseudonyms;
  std::size_t map_size = 0;
  if (anonymise) {
    if (path_is_inside(options.name_map, options.output_dir))
      throw usage_error(options.name_map.string() +
                        ": the name map must be kept outside the output folder, which is meant to be shared without it");
    // Locked only while the studies get their pseudonyms, so runs into other output
    // folders that share the map wait seconds, not a whole run.
    NameMap map(options.name_map);
    for (const auto& s : studies) pseudonyms.push_back(map.pseudonym(s.name));
    map.save();  // before any output exists that only the map can link back
    map_size = map.size();
  }
  const StopSignals signals;
  const std::set<std::string> held_at_start = clean_stale_work(options.output_dir);
  {
    // Millisecond time and the process ID: two runs never share a log, even when they
    // start in the same second or run side by side.
    const auto now = std::chrono::system_clock::now();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::string stamp = iso_time_now();
    stamp.pop_back();  // 'Z'
    std::replace(stamp.begin(), stamp.end(), ':', '-');
    char tail[32];
    std::snprintf(tail, sizeof tail, ".%03dZ-%d", static_cast<int>(ms), static_cast<int>(::getpid()));
    log::add_file(options.output_dir / (options.tool + "-" + stamp + tail + ".log"));
  }
  log::info("{} {} (git {}): {} studies -> {}", options.tool, kVersion, kGitRevision, studies.size(),
            options.output_dir.string());
  if (options.cohort_files_only) log::info("--cohort-files-only: no study is run, the cohort files are rebuilt");
  if (options.shard_count > 0)
    log::info("shard {}/{}: {} of the {} studies found", options.shard_index, options.shard_count, studies.size(),
              all_studies.size());
  log::debug("config: {}", options.config.dump());
  if (anonymise) log::info("study names replaced by pseudonyms (--anonymise-names; {} names in the map)", map_size);

  BatchSummary summary;
  Progress progress(studies.size());
  const auto batch_start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < studies.size(); ++i) {
    Study study = studies[i];
    if (anonymise) {
      // Paths inside the study (a DICOM slice) start with its path, so they go too.
      log::set_redactions({{study.path.string(), pseudonyms[i]}, {study.name, pseudonyms[i]}});
      study.name = pseudonyms[i];
    }
    if (g_stop_signal != 0) {
      summary.interrupted = true;
      summary.results.push_back({study.name, StudyStatus::kNotRun, "interrupted before it ran", 0});
      continue;
    }
    StudyResult result{study.name, StudyStatus::kDone, "", 0};
    const fs::path final_dir = options.output_dir / study.name;
    const fs::path work_dir =
        options.output_dir / ("." + study.name + ".partial-" + std::to_string(::getpid()));
    progress.begin(i, study.name);
    const auto t0 = std::chrono::steady_clock::now();
    const std::string started = iso_time_now();
    StudyLock study_lock;
    std::string holder;
    if (!study_lock.try_acquire(study_lock_file(options.output_dir, study.name), &holder)) {
      result.status = StudyStatus::kSkipped;
      result.message = "being processed by another run (" + holder + ")";
      progress.clear_line();
      log::info("{}: skipped, {}", study.name, result.message);
      summary.results.push_back(result);
      continue;
    }
    try {
      // Leftovers of a run that held this study at start and may have died since; the
      // rest were cleaned at start, so no folder scan per study.
      if (held_at_start.count(study.name)) {
        int removed = 0, restored = 0;
        clean_stale_study(options.output_dir, study.name, removed, restored);
      }
      bool replace = options.force;
      if (fs::exists(final_dir) && !options.force) {
        if (options.resume && study_outputs_complete(final_dir)) {
          result.status = StudyStatus::kSkipped;
          result.message = "outputs complete (--resume)";
        } else if (options.resume && fs::exists(final_dir / kProvenanceFile)) {
          // Written by spine (it has provenance) but damaged since: safe to redo. A folder
          // without provenance may be anyone's, so it is reported below, not replaced.
          log::warn("{}: outputs incomplete or damaged, running it again (--resume)", study.name);
          replace = true;
        } else {
          throw input_error(final_dir.string() + ": output exists (use --force to overwrite" +
                            std::string(options.resume ? ")" : " or --resume to skip)"));
        }
      }
      if (result.status == StudyStatus::kDone) {
        fs::remove_all(work_dir);
        fs::create_directories(work_dir);
        nlohmann::json extra = process(study, work_dir);
        nlohmann::json prov{{"tool", options.tool},
                            {"version", kVersion},
                            {"git_revision", kGitRevision},
                            {"study", study.name},
                            {"config", options.config},
                            {"inputs", study.path.empty() ? nlohmann::json::array() : nlohmann::json::array({input_record(study.path, anonymise)})},
                            {"started", started}};
        nlohmann::json models = nlohmann::json::array();
        for (const auto& m : options.study_models ? options.study_models() : options.models)
          models.push_back({{"name", m.name}, {"version", m.version}, {"sha256", m.sha256}});
        prov["models"] = models;
        if (!extra.is_null()) prov["result"] = extra;
        prov["outputs"] = output_records(work_dir);
        prov["finished"] = iso_time_now();
        prov["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        write_text_file(work_dir / kProvenanceFile, prov.dump(2) + "\n");
        if (replace && fs::exists(final_dir)) {
          const fs::path old_dir = options.output_dir / ("." + study.name + ".old-" + std::to_string(::getpid()));
          fs::rename(final_dir, old_dir);
          fs::rename(work_dir, final_dir);
          fs::remove_all(old_dir, ec);
        } else {
          rename_no_replace(work_dir, final_dir);
        }
      }
    } catch (const Error& e) {
      result.status = StudyStatus::kFailed;
      result.message = e.what();
    } catch (const std::exception& e) {
      result.status = StudyStatus::kFailed;
      result.message = std::string("internal error: ") + e.what();
    }
    if (result.status == StudyStatus::kFailed) fs::remove_all(work_dir, ec);
    result.message = log::redact(result.message);
    record_outcome(options, study, result, final_dir);
    study_lock.release();
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    progress.clear_line();
    switch (result.status) {
      case StudyStatus::kDone:
        if (!progress.bar()) log::info("{}: done in {:.2f} s", study.name, result.seconds);
        else log::debug("{}: done in {:.2f} s", study.name, result.seconds);
        break;
      case StudyStatus::kSkipped: log::info("{}: skipped, {}", study.name, result.message); break;
      case StudyStatus::kFailed: log::error("{}: {}", study.name, result.message); break;
      case StudyStatus::kNotRun: break;
    }
    summary.results.push_back(result);
  }
  log::set_redactions({});
  progress.clear_line();
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - batch_start).count();
  const int done = summary.count(StudyStatus::kDone);
  double done_seconds = 0;
  for (const auto& r : summary.results) {
    if (r.status == StudyStatus::kDone) done_seconds += r.seconds;
  }
  if (options.on_finish || options.bids_layout) {
    const FolderLock folder(options.output_dir);
    clean_stale_cohort_files(options.output_dir);
    if (options.on_finish) options.on_finish();
    if (options.bids_layout) {
      const int n = write_bids_derivatives(options.output_dir, options.tool);
      log::info("{}: {} studies in derivatives/spine (--layout bids)", options.output_dir.string(), n);
    }
  }
  const std::string not_run =
      summary.interrupted ? ", " + std::to_string(summary.count(StudyStatus::kNotRun)) + " not run (interrupted)" : "";
  log::info("summary: {} done, {} failed, {} skipped{}; {:.2f} s per study, {:.1f} s in all", done,
            summary.count(StudyStatus::kFailed), summary.count(StudyStatus::kSkipped), not_run,
            done > 0 ? done_seconds / done : 0.0, total);
  return summary;
}

}  // namespace spine
