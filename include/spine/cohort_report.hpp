// The cohort's quality-control page, OUTDIR/report.html, and the list files that take
// failed and flagged studies back as input (OUTDIR/failed.txt, OUTDIR/flagged.txt).
// Rebuilt from the study folders at the end of every run, like the cohort tables.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace spine {

struct ReportColumn {
  std::string title;
  bool numeric = false;  // sorted as numbers
};

struct ReportRow {
  std::string study;
  std::vector<std::string> cells;   // one per column; numbers as plain text, empty: none
  std::vector<std::string> flags;
  bool reliable = true;             // false: listed in flagged.txt even without flags
  std::string picture;              // the overlay, relative to the study folder; shown when the file is there
  std::vector<std::string> files;   // the study's result files, relative to its folder
};

// A distribution plotted above the table (a histogram of one measure over the cohort).
struct ReportFigure {
  std::string title;
  std::vector<double> values;
};

struct CohortReport {
  std::string tool;                 // "spine-cobb"
  std::vector<ReportColumn> columns;
  std::vector<ReportRow> rows;      // one per study with complete outputs
  std::vector<ReportFigure> figures;
};

// Writes report.html (self-contained: styles, script and figures inline, overlays linked
// beside it), flagged.txt (inputs of rows with flags or not reliable) and failed.txt
// (inputs of OUTDIR/failures/, see batch.hpp), atomically. Input paths come from each
// study's provenance; under --anonymise-names they are withheld and the lists carry the
// pseudonyms as comments instead.
void write_cohort_report(const std::filesystem::path& out_dir, const CohortReport& report);

}  // namespace spine
