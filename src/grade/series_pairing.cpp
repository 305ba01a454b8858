// A study's series read together: T1 and T2 (and T2 SPACE) slices of one study show the
// same discs in the same place, so their names must agree. Where they disagree by a whole
// number of levels, the lower naming is kept. On SPIDER's slices the usual naming fault is
// the first sacral segment taken for L5 (a bright rudimentary S1/S2 disc below it), which
// names every disc one level too high. Of the 20 training pairs whose names disagreed by
// a constant number of levels, SPIDER's count of the discs in view showed the higher
// naming wrong in 9 (it named discs beyond those in view); a count can show a naming too
// high, not one too low. The 3 such pairs looked at on the image had the lower naming
// right. Decided on the training subset only.
#include <algorithm>
#include <cctype>
#include <cmath>

#include "spine/disc_grading.hpp"
#include "spine/labels.hpp"

namespace spine {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool is_sequence_token(const std::string& token) {
  const std::string t = lower(token);
  return t == "t1" || t == "t2" || t == "t1w" || t == "t2w";
}

// Rank of a disc's upper vertebra in the normal sequence; -1 when not in it.
int upper_rank(int disc_label) {
  const auto seq = normal_sequence();
  const auto it = std::find(seq.begin(), seq.end(), disc_label - label::kDiscOffset);
  return it == seq.end() ? -1 : static_cast<int>(it - seq.begin());
}

}  // namespace

SeriesOfStudy series_of_study(const std::string& series_name) {
  // Tokens are separated by '_', '-', '.' or ' '; the study is the name before the first
  // sequence token ("101_t2_SPACE" -> "101", "sub-01_ses-1_T2w" -> "sub-01_ses-1").
  std::size_t start = 0;
  while (start <= series_name.size()) {
    std::size_t end = series_name.find_first_of("_-. ", start);
    if (end == std::string::npos) end = series_name.size();
    const std::string token = series_name.substr(start, end - start);
    if (is_sequence_token(token)) {
      SeriesOfStudy out;
      out.token = token;
      // The token and the all-letter tokens after it ("t2_SPACE" tells a study's T2
      // series apart); a token with a digit (a date, a number) ends it.
      std::size_t stop = end;
      while (stop < series_name.size()) {
        std::size_t next = series_name.find_first_of("_-. ", stop + 1);
        if (next == std::string::npos) next = series_name.size();
        const std::string t = series_name.substr(stop + 1, next - stop - 1);
        if (t.empty() || !std::all_of(t.begin(), t.end(), [](unsigned char ch) { return std::isalpha(ch) != 0; })) break;
        stop = next;
      }
      out.sequence = series_name.substr(start, stop - start);
      out.study_key = start > 0 ? series_name.substr(0, start - 1) : std::string{};
      return out;
    }
    start = end + 1;
  }
  return {};
}

NameComparison compare_disc_names(const std::vector<DiscPosition>& mine, const std::vector<DiscPosition>& other,
                                  double tolerance_mm) {
  NameComparison c;
  bool first = true;
  for (const auto& a : mine) {
    const DiscPosition* nearest = nullptr;
    double best = tolerance_mm;
    for (const auto& b : other) {
      double d2 = 0;
      for (int i = 0; i < 3; ++i) d2 += (a.lps_mm[i] - b.lps_mm[i]) * (a.lps_mm[i] - b.lps_mm[i]);
      if (std::sqrt(d2) <= best) {
        best = std::sqrt(d2);
        nearest = &b;
      }
    }
    const int ra = upper_rank(a.label);
    if (!nearest || ra < 0 || upper_rank(nearest->label) < 0) continue;
    // A disc named higher (nearer the head) has the lower rank.
    const int higher = upper_rank(nearest->label) - ra;
    ++c.matched;
    if (first) c.levels_higher = higher;
    else if (higher != c.levels_higher) c.consistent = false;
    first = false;
  }
  return c;
}

int move_names_down(std::vector<DiscLocation>& discs, int levels) {
  const auto seq = normal_sequence();
  const int sacrum_rank = static_cast<int>(seq.size()) - 1;
  int removed = 0;
  std::vector<DiscLocation> kept;
  for (auto& d : discs) {
    const int r = upper_rank(d.label);
    if (r < 0) {  // not a level of the normal sequence (the naming never makes one): kept as it is
      kept.push_back(d);
      continue;
    }
    // A disc whose upper vertebra would become the sacrum lies inside it (the
    // rudimentary S1/S2 disc): it is not a lumbar disc.
    if (r + levels >= sacrum_rank) {
      ++removed;
      continue;
    }
    d.label = label::kDiscOffset + seq[static_cast<std::size_t>(r + levels)];
    d.name = label_name(d.label);
    kept.push_back(d);
  }
  discs = std::move(kept);
  return removed;
}

}  // namespace spine
