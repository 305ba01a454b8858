// The name map behind --anonymise-names: CSV "pseudonym,study", locked while a run uses it.
#include "spine/pseudonyms.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "spine/csv.hpp"
#include "spine/error.hpp"
#include "spine/io.hpp"

namespace fs = std::filesystem;

namespace spine {
namespace {
constexpr const char* kHeader = "pseudonym,study";
}

NameMap::NameMap(fs::path file) : file_(std::move(file)) {
  const fs::path lock = file_.string() + ".lock";
  std::error_code mkdir_error;
  if (!file_.parent_path().empty()) fs::create_directories(file_.parent_path(), mkdir_error);
  lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0)
    throw input_error(lock.string() + ": cannot create the name map's lock file (" + std::strerror(errno) + ")");
  // Blocking: another run holds the map only while it gives its studies their pseudonyms.
  if (::flock(lock_fd_, LOCK_EX) != 0) {
    ::close(lock_fd_);
    throw input_error(lock.string() + ": cannot lock the name map");
  }
  try {
    read();
  } catch (...) {
    ::close(lock_fd_);  // the destructor does not run for a constructor that throws
    throw;
  }
}

void NameMap::read() {
  std::error_code ec;
  if (!fs::exists(file_, ec)) return;
  std::ifstream in(file_, std::ios::binary);
  if (!in) throw input_error(file_.string() + ": cannot read the name map");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (n == 1) {
      if (line != kHeader) throw input_error(file_.string() + ": not a spine name map (first line is not '" + kHeader + "')");
      continue;
    }
    if (line.empty()) continue;
    std::vector<std::string> f;
    try {
      f = parse_csv_line(line);
    } catch (const std::exception&) {
      f.clear();
    }
    if (f.size() != 2 || f[0].rfind("anon-", 0) != 0 || f[1].empty() || by_name_.count(f[1]) ||
        by_pseudonym_.count(f[0]))
      throw input_error(file_.string() + ": name map line " + std::to_string(n) + " is malformed or repeats an entry");
    by_name_[f[1]] = f[0];
    by_pseudonym_[f[0]] = f[1];
  }
  if (n == 0) throw input_error(file_.string() + ": name map is empty (delete it to start a new one)");
}

NameMap::~NameMap() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::string NameMap::pseudonym(const std::string& study) {
  const auto it = by_name_.find(study);
  if (it != by_name_.end()) return it->second;
  static std::random_device random;  // /dev/urandom, opened once
  std::string code;
  do {
    char hex[16];
    const auto hi = static_cast<unsigned>(random()) & 0xffu, lo = static_cast<unsigned>(random());
    std::snprintf(hex, sizeof hex, "%02x%08x", hi, lo);
    code = std::string("anon-") + hex;
  } while (by_pseudonym_.count(code));
  by_name_[study] = code;
  by_pseudonym_[code] = study;
  changed_ = true;
  return code;
}

void NameMap::save() {
  if (!changed_) return;
  std::ostringstream out;
  out << kHeader << "\n";
  for (const auto& [code, name] : by_pseudonym_) out << code << ',' << csv_field(name) << '\n';
  write_text_file(file_, out.str(), /*owner_only=*/true);
  changed_ = false;
}

bool path_is_inside(const fs::path& inner, const fs::path& outer) {
  std::error_code ec;
  const fs::path a = fs::weakly_canonical(fs::absolute(inner), ec), b = fs::weakly_canonical(fs::absolute(outer), ec);
  auto ai = a.begin();
  for (auto bi = b.begin(); bi != b.end(); ++bi, ++ai) {
    if (bi->empty()) continue;  // trailing slash
    if (ai == a.end() || *ai != *bi) return false;
  }
  return true;
}

}  // namespace spine
