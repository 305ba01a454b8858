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
  for (const auto& a : mine) {
    const DiscPosition* nearest = nullptr;
    double best = tolerance_mm;
    for (const auto& b : other) {
      double d2 = 0;
      for (int i = 0; i < 3; ++i) d2 += (a.lps_mm[i] - b.lps_mm[i]) * (a.lps_mm[i] - b.lps_mm[i]);
      const double d = std::sqrt(d2);
      if (d <= best) {
        best = d;
        nearest = &b;
      }
    }
    const int ra = upper_rank(a.label);
    if (!nearest || ra < 0 || upper_rank(nearest->label) < 0) continue;
    // A disc named higher (nearer the head) has the lower rank.
    const int higher = upper_rank(nearest->label) - ra;
    if (c.matched == 0) c.levels_higher = higher;
    else if (higher != c.levels_higher) c.consistent = false;
    ++c.matched;
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

NameReconciliation reconcile_names(std::vector<DiscLocation>& discs, const std::vector<DiscPosition>& positions,
                                   const std::string& sequence, const std::vector<OtherSeries>& others) {
  NameReconciliation out;
  nlohmann::json compared = nlohmann::json::array();
  for (const auto& o : others) {
    if (!o.discs) {
      compared.push_back({{"sequence", o.sequence}, {"compared", false}, {"why", "its discs could not be found"}});
      continue;
    }
    const NameComparison nc = compare_disc_names(positions, *o.discs);
    if (nc.matched < kMinDiscsToCompareNames) {
      compared.push_back({{"sequence", o.sequence}, {"compared", false}, {"matched_discs", nc.matched},
                          {"why", "fewer than " + std::to_string(kMinDiscsToCompareNames) +
                                      " discs in the same place (another field of view, or slices without "
                                      "position that are not the same size)"}});
      continue;
    }
    compared.push_back({{"sequence", o.sequence}, {"compared", true}, {"matched_discs", nc.matched},
                        {"this_series_names_levels_higher", nc.levels_higher}, {"consistent", nc.consistent}});
    out.names_disagree = out.names_disagree || !nc.consistent || nc.levels_higher != 0;
    if (!nc.consistent) {
      out.flags.push_back("names differ from the study's " + o.sequence +
                          " series by different numbers of levels along the spine (check the levels)");
    } else if (nc.levels_higher > out.moved_down) {
      out.moved_down = nc.levels_higher;
      out.lower_sequence = o.sequence;
    } else if (nc.levels_higher < 0) {
      out.flags.push_back("the study's " + o.sequence + " series names the same discs " +
                          std::to_string(-nc.levels_higher) + " level(s) higher; this series' (lower) names are kept");
    }
  }
  int removed = 0;
  if (out.moved_down > 0) {
    removed = move_names_down(discs, out.moved_down);
    out.flags.push_back("names moved " + std::to_string(out.moved_down) + " level(s) down to the study's " +
                        out.lower_sequence + " series, which named the same discs lower (the usual naming fault on "
                        "sagittal slices is the first sacral segment taken for L5)" +
                        (removed ? "; " + std::to_string(removed) + " disc(s) below L5/S1 left out" : ""));
  }
  out.record = {{"sequence", sequence},
                {"other_series", compared},
                {"names_moved_down_levels", out.moved_down},
                {"discs_left_out", removed},
                {"rule", "a study's series name the same discs alike; where they disagree by whole levels the lower "
                         "naming is kept (spine-grade --no-series-pairing grades each series alone)"}};
  return out;
}

}  // namespace spine
