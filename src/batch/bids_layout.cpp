// The BIDS-derivatives view of an output folder: every complete study with a BIDS name
// linked into derivatives/spine/sub-*/[ses-*/]anat/ under BIDS file names.
#include "spine/bids.hpp"

#include <cctype>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "spine/batch.hpp"
#include "spine/io.hpp"
#include "spine/labels.hpp"
#include "spine/log.hpp"
#include "spine/version.hpp"

namespace fs = std::filesystem;

namespace spine {
namespace {

// `to` made a hard link of (or, across file systems, a copy of) `from`, replacing what
// was there atomically.
void place(const fs::path& from, const fs::path& to) {
  const fs::path tmp = to.parent_path() / ("." + to.filename().string() + ".tmp-link");
  std::error_code ec;
  fs::remove(tmp, ec);
  fs::create_hard_link(from, tmp, ec);
  if (ec) fs::copy_file(from, tmp, fs::copy_options::overwrite_existing);
  fs::rename(tmp, to);
}

std::string dseg_tsv() {
  std::string tsv = "index\tname\tcolor\n";
  for (const auto& l : all_labels())
    tsv += fmt::format("{}\t{}\t#{:02x}{:02x}{:02x}\n", l.value, l.name, l.rgb[0], l.rgb[1], l.rgb[2]);
  return tsv;
}

}  // namespace

std::optional<fs::path> bids_anat_folder(const std::string& study) {
  // Entities are key-value pairs joined by '_'; the last part is the suffix.
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    const auto us = study.find('_', start);
    parts.push_back(study.substr(start, us - start));
    if (us == std::string::npos) break;
    start = us + 1;
  }
  if (parts.size() < 2 || parts[0].rfind("sub-", 0) != 0 || parts[0].size() <= 4) return std::nullopt;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    const auto dash = parts[i].find('-');
    if (dash == std::string::npos || dash == 0 || dash + 1 == parts[i].size()) return std::nullopt;
    for (char c : parts[i])
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return std::nullopt;
  }
  fs::path folder = parts[0];
  if (parts[1].rfind("ses-", 0) == 0) folder /= parts[1];
  return folder / "anat";
}

int write_bids_derivatives(const fs::path& out_dir, const std::string& tool) {
  const fs::path root = out_dir / "derivatives" / "spine";
  fs::create_directories(root);
  const nlohmann::json description{
      {"Name", "spine derivatives"},
      {"BIDSVersion", "1.8.0"},
      {"DatasetType", "derivative"},
      {"GeneratedBy", {{{"Name", "spine"}, {"Version", kVersion}, {"Description", tool + " (git " + kGitRevision + ")"}}}}};
  write_text_file(root / "dataset_description.json", description.dump(2) + "\n");
  write_text_file(root / "dseg.tsv", dseg_tsv());
  int written = 0, other = 0;
  for (const auto& study : complete_studies(out_dir, kProvenanceFile)) {
    const auto folder = bids_anat_folder(study);
    if (!folder) {
      ++other;
      continue;
    }
    const fs::path dest = root / *folder;
    fs::create_directories(dest);
    for (const auto& e : fs::directory_iterator(out_dir / study)) {
      if (!e.is_regular_file()) continue;
      const std::string file = e.path().filename().string();
      std::string name;
      if (file == "labels.nii.gz") name = study + "_dseg.nii.gz";
      else if (file == "overlay.png") name = study + "_overlay.png";
      else if (file == kProvenanceFile) name = study + "_provenance.json";
      else if (e.path().extension() == ".json") name = study + "_" + file;
      else continue;  // colour tables (dseg.tsv covers them), prep's images keep their folder
      place(e.path(), dest / name);
    }
    ++written;
  }
  if (other > 0)
    log::warn("{}: {} studies without a BIDS name (sub-<label>[_ses-<label>]..._<suffix>) left out of derivatives/spine",
              out_dir.string(), other);
  return written;
}

}  // namespace spine
