// --anonymise-names: study names (often a patient ID or an accession number) replaced by
// stable pseudonyms in every output and message; the mapping back is kept in a file of
// its own, outside the output folder, so that the outputs can be shared without it.
#pragma once
#include <filesystem>
#include <map>
#include <string>

namespace spine {

class NameMap {
 public:
  // Locks the map for the object's lifetime (an flock on FILE.lock, so two runs sharing
  // one map never hand out two pseudonyms for one study) and reads it when it exists.
  // Input error when the file is not a map this class wrote.
  explicit NameMap(std::filesystem::path file);
  ~NameMap();
  NameMap(const NameMap&) = delete;
  NameMap& operator=(const NameMap&) = delete;

  // The study's pseudonym ("anon-" and 10 random hex digits), made when the name is new.
  // Random rather than a hash of the name: a hash of a patient ID is undone by hashing
  // every possible ID, a random code only through the map.
  std::string pseudonym(const std::string& study);
  // Writes the map atomically when something was added.
  void save();
  std::size_t size() const { return by_name_.size(); }

 private:
  void read();
  std::filesystem::path file_;
  int lock_fd_ = -1;
  bool changed_ = false;
  std::map<std::string, std::string> by_name_;
  std::map<std::string, std::string> by_pseudonym_;
};

// Whether `inner` lies inside the folder `outer` (after resolving both as far as they exist).
bool path_is_inside(const std::filesystem::path& inner, const std::filesystem::path& outer);

}  // namespace spine
