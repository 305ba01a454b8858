// report.html: a table with a row per study (overlay thumbnail, key results, flags, links),
// sortable and filterable in the page itself, histograms of the main measures as inline
// SVG, and the failed studies; plus the failed / flagged list files.
#include "spine/cohort_report.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "spine/batch.hpp"
#include "spine/cli.hpp"
#include "spine/csv.hpp"
#include "spine/io.hpp"

namespace fs = std::filesystem;

namespace spine {
namespace {

std::string html(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// A relative link: each path segment percent-encoded, so study names with spaces, '#' or
// '?' still point at their folder.
std::string url(const std::string& relative) {
  std::string out;
  for (unsigned char c : relative) {
    if (std::isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.' || c == '~') out += static_cast<char>(c);
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

// A histogram of the finite values: 12 bins over their range, as an SVG of fixed size.
std::string histogram_svg(const ReportFigure& f) {
  std::vector<double> v;
  for (double x : f.values)
    if (std::isfinite(x)) v.push_back(x);
  std::ostringstream s;
  const int w = 320, h = 150, left = 34, bottom = 22;
  s << "<figure class=\"hist\"><svg width=\"" << w << "\" height=\"" << h << "\" role=\"img\" aria-label=\"" << html(f.title)
    << "\">";
  if (v.empty()) {
    s << "<text x=\"10\" y=\"70\">no values</text></svg>";
  } else {
    const auto [lo_it, hi_it] = std::minmax_element(v.begin(), v.end());
    double lo = *lo_it, hi = *hi_it;
    if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
    const int bins = 12;
    std::vector<int> count(bins, 0);
    for (double x : v) ++count[std::min(bins - 1, static_cast<int>((x - lo) / (hi - lo) * bins))];
    const int top = *std::max_element(count.begin(), count.end());
    const double bw = static_cast<double>(w - left - 6) / bins;
    for (int b = 0; b < bins; ++b) {
      const double bh = (h - bottom - 8) * static_cast<double>(count[b]) / top;
      s << fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"#4a7ab5\">"
                       "<title>{:.4g} to {:.4g}: {}</title></rect>",
                       left + b * bw + 1, h - bottom - bh, bw - 2, bh, lo + b * (hi - lo) / bins,
                       lo + (b + 1) * (hi - lo) / bins, count[b]);
    }
    s << fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>", left, h - bottom, w - 4, h - bottom);
    s << fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\">{:.4g}</text>", left, h - 6, lo);
    s << fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{:.4g}</text>", w - 4, h - 6, hi);
    s << fmt::format("<text x=\"2\" y=\"14\" font-size=\"11\">{}</text>", top);
    s << fmt::format("<text x=\"2\" y=\"{}\" font-size=\"11\">0</text>", h - bottom);
  }
  s << "</svg><figcaption>" << html(f.title) << " (n = " << v.size() << ")</figcaption></figure>\n";
  return s.str();
}

const char* kStyle = R"(body{font-family:sans-serif;margin:16px;color:#222}
h1{font-size:20px;margin:0 0 4px}
.summary{margin:4px 0 12px}
.figures{display:flex;flex-wrap:wrap;gap:16px}
figure.hist{margin:0}figcaption{font-size:12px;text-align:center}
.controls{margin:12px 0;display:flex;gap:16px;align-items:center}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 6px;vertical-align:top}
th{background:#eee;cursor:pointer;position:sticky;top:0}
th.sorted-asc::after{content:" \25B2"}th.sorted-desc::after{content:" \25BC"}
td.num{text-align:right}
tr.flagged td{background:#fff3f0}
img.thumb{width:160px;height:auto;display:block}
.flag{color:#b00020}
.failed td{background:#fde}
)";

// Sorting by a column (numbers as numbers, empty last) and filtering by text and by flag,
// in the page itself: no network, no library.
const char* kScript = R"(
(function(){
  var table=document.getElementById('studies'), body=table.tBodies[0];
  var rows=Array.prototype.slice.call(body.rows);
  function apply(){
    var text=document.getElementById('filter').value.toLowerCase();
    var flaggedOnly=document.getElementById('flagged-only').checked;
    var shown=0;
    rows.forEach(function(r){
      var ok=(!flaggedOnly||r.dataset.flagged==='1')&&(!text||r.textContent.toLowerCase().indexOf(text)>=0);
      r.style.display=ok?'':'none'; if(ok)shown++;
    });
    document.getElementById('shown').textContent=shown+' of '+rows.length+' shown';
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){
    if(th.dataset.sort===undefined)return;
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('sorted-asc');
      Array.prototype.forEach.call(table.tHead.rows[0].cells,function(c){c.classList.remove('sorted-asc','sorted-desc');});
      th.classList.add(asc?'sorted-asc':'sorted-desc');
      var numeric=th.dataset.sort==='num';
      rows.sort(function(a,b){
        var x=a.cells[i].dataset.v!==undefined?a.cells[i].dataset.v:a.cells[i].textContent;
        var y=b.cells[i].dataset.v!==undefined?b.cells[i].dataset.v:b.cells[i].textContent;
        if(numeric){
          var fx=x===''?NaN:parseFloat(x), fy=y===''?NaN:parseFloat(y);
          if(isNaN(fx)&&isNaN(fy))return 0; if(isNaN(fx))return 1; if(isNaN(fy))return -1;
          return asc?fx-fy:fy-fx;
        }
        return asc?x.localeCompare(y):y.localeCompare(x);
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  // report.html#flagged opens with only the flagged studies; #filter=TEXT with a filter.
  var hash=decodeURIComponent(location.hash.slice(1));
  if(hash==='flagged')document.getElementById('flagged-only').checked=true;
  else if(hash.indexOf('filter=')===0)document.getElementById('filter').value=hash.slice(7);
  document.getElementById('filter').addEventListener('input',apply);
  document.getElementById('flagged-only').addEventListener('change',apply);
  apply();
})();
)";

bool flagged(const ReportRow& r) { return !r.flags.empty() || !r.reliable; }

std::string list_file(const std::string& what, const std::vector<std::pair<std::string, std::string>>& studies) {
  std::ostringstream s;
  s << "# " << what << " (" << studies.size() << "): their inputs, one per line; give this file back to the command\n";
  for (const auto& [study, input] : studies) {
    if (input.empty()) s << "# " << study << ": input withheld (--anonymise-names)\n";
    else s << input << "\n";
  }
  return s.str();
}

// The path of a study's input as recorded in its provenance, absolute; empty when
// withheld or unreadable.
std::string recorded_input(const fs::path& study_dir) {
  try {
    std::ifstream in(study_dir / kProvenanceFile);
    const auto prov = nlohmann::json::parse(in);
    const auto& input = prov.at("inputs").at(0);
    const auto& p = input.contains("absolute_path") ? input.at("absolute_path") : input.at("path");
    if (!p.is_string()) return "";
    return fs::absolute(p.get<std::string>()).lexically_normal().string();
  } catch (const std::exception&) {
    return "";
  }
}

}  // namespace

void write_cohort_report(const fs::path& out_dir, const CohortReport& report) {
  const auto failed = failed_studies(out_dir);
  const auto n_flagged = std::count_if(report.rows.begin(), report.rows.end(), flagged);
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" << html(report.tool)
    << " cohort report</title>\n<style>" << kStyle << "</style></head><body>\n";
  h << "<h1>" << html(report.tool) << " cohort report</h1>\n";
  h << "<p class=\"summary\" id=\"summary\">" << report.rows.size() << " studies with results, " << n_flagged
    << " flagged, " << failed.size() << " failed. Written " << iso_time_now() << " by " << html(version_line(report.tool))
    << ". Lists to run again: <a href=\"flagged.txt\">flagged.txt</a>, <a href=\"failed.txt\">failed.txt</a>.</p>\n";
  if (!report.figures.empty()) {
    h << "<div class=\"figures\">\n";
    for (const auto& f : report.figures)
      if (std::any_of(f.values.begin(), f.values.end(), [](double v) { return std::isfinite(v); }))
        h << histogram_svg(f);  // a measure no study has (HU in an MR cohort) is left out
    h << "</div>\n";
  }
  h << "<div class=\"controls\"><label>Filter <input id=\"filter\" type=\"search\" placeholder=\"study, level, flag...\"></label>"
       "<label><input id=\"flagged-only\" type=\"checkbox\"> flagged only</label><span id=\"shown\"></span></div>\n";
  h << "<table id=\"studies\"><thead><tr><th>overlay</th><th data-sort=\"text\">study</th>";
  for (const auto& c : report.columns) h << "<th data-sort=\"" << (c.numeric ? "num" : "text") << "\">" << html(c.title) << "</th>";
  h << "<th data-sort=\"num\">flags</th><th>files</th></tr></thead>\n<tbody>\n";
  for (const auto& r : report.rows) {
    const bool f = flagged(r);
    h << "<tr class=\"study" << (f ? " flagged" : "") << "\" data-flagged=\"" << (f ? 1 : 0) << "\" data-study=\""
      << html(r.study) << "\">";
    h << "<td>";
    if (!r.picture.empty() && fs::exists(out_dir / r.study / r.picture)) {
      const std::string src = url(r.study + "/" + r.picture);
      h << "<a href=\"" << src << "\"><img class=\"thumb\" loading=\"lazy\" src=\"" << src << "\" alt=\"overlay of "
        << html(r.study) << "\"></a>";
    }
    h << "</td><td><a href=\"" << url(r.study) << "/\">" << html(r.study) << "</a></td>";
    for (std::size_t i = 0; i < report.columns.size(); ++i) {
      const std::string v = i < r.cells.size() ? r.cells[i] : "";
      if (report.columns[i].numeric) h << "<td class=\"num\" data-v=\"" << html(v) << "\">" << html(v) << "</td>";
      else h << "<td>" << html(v) << "</td>";
    }
    h << "<td data-v=\"" << r.flags.size() + (r.reliable ? 0 : 1) << "\">";
    if (!r.reliable) h << "<div class=\"flag\"><b>not reliable</b></div>";
    for (const auto& fl : r.flags) h << "<div class=\"flag\">" << html(fl) << "</div>";
    h << "</td><td>";
    for (const auto& file : r.files) h << "<a href=\"" << url(r.study + "/" + file) << "\">" << html(file) << "</a><br>";
    h << "</td></tr>\n";
  }
  h << "</tbody></table>\n";
  h << "<h2>Failed (" << failed.size() << ")</h2>\n";
  if (!failed.empty()) {
    h << "<table id=\"failed\"><thead><tr><th>study</th><th>error</th><th>when</th></tr></thead><tbody>\n";
    for (const auto& f : failed)
      h << "<tr class=\"failed\"><td>" << html(f.study) << "</td><td>" << html(f.error) << "</td><td>" << html(f.time)
        << "</td></tr>\n";
    h << "</tbody></table>\n";
  }
  h << "<script>" << kScript << "</script>\n</body></html>\n";

  std::vector<std::pair<std::string, std::string>> flagged_inputs, failed_inputs;
  for (const auto& r : report.rows)
    if (flagged(r)) flagged_inputs.emplace_back(r.study, recorded_input(out_dir / r.study));
  for (const auto& f : failed) failed_inputs.emplace_back(f.study, f.input);
  write_text_file(out_dir / "flagged.txt", list_file("flagged studies", flagged_inputs));
  write_text_file(out_dir / "failed.txt", list_file("failed studies", failed_inputs));
  write_text_file(out_dir / "report.html", h.str());
}

}  // namespace spine
