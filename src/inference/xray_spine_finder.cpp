// The spine finder for frontal radiographs as they come: letterbox input, decoding of
// T1 / L5 keypoints, column and hardware maps, and the crop the landmark stages get.
#include "spine/xray_spine_finder.hpp"

#include <algorithm>
#include <cmath>

#include "spine/error.hpp"
#include "heatmap.hpp"

namespace spine {
namespace {

constexpr int kSize = 256, kStride = 4, kOut = kSize / kStride;

// Margins of the AASCE training images around T1..L5, as fractions of the T1-top to
// L5-bottom distance L (medians over the 481 images: top 0.035, bottom 0.079, spine
// centre to either side 0.20; from the reference landmarks, with the definitions of
// spine_geometry in scripts/cobb/reframe.py).
constexpr double kTopMargin = 0.04, kBottomMargin = 0.09, kHalfWidth = 0.21;
// Beyond the column's own lateral extent, for curves wider than the usual frame.
constexpr double kColumnMargin = 0.08;
// A crop this close to the whole image is the whole image: the film is already framed
// like the training images, and cropping would only move their borders.
constexpr double kWholeImageFraction = 0.75;
constexpr double kEdgeMargin = 0.02;  // of L, see decode_spine_finder

// Adaptive average pooling (torch's rule: output i covers input floor(i n / m) up to
// ceil((i + 1) n / m)), separably.
std::vector<float> area_resize(const FloatImage& img, int out_h, int out_w) {
  const int in_w = static_cast<int>(img.nx()), in_h = static_cast<int>(img.ny());
  std::vector<float> rows(static_cast<std::size_t>(in_h) * out_w);
  for (int x = 0; x < out_w; ++x) {
    const int a = static_cast<int>(std::floor(static_cast<double>(x) * in_w / out_w));
    const int b = static_cast<int>(std::ceil(static_cast<double>(x + 1) * in_w / out_w));
    for (int y = 0; y < in_h; ++y) {
      const float* r = img.voxels.data() + static_cast<std::size_t>(y) * in_w;
      double s = 0;
      for (int i = a; i < b; ++i) s += r[i];
      rows[static_cast<std::size_t>(y) * out_w + x] = static_cast<float>(s / (b - a));
    }
  }
  std::vector<float> out(static_cast<std::size_t>(out_h) * out_w);
  for (int y = 0; y < out_h; ++y) {
    const int a = static_cast<int>(std::floor(static_cast<double>(y) * in_h / out_h));
    const int b = static_cast<int>(std::ceil(static_cast<double>(y + 1) * in_h / out_h));
    for (int x = 0; x < out_w; ++x) {
      double s = 0;
      for (int i = a; i < b; ++i) s += rows[static_cast<std::size_t>(i) * out_w + x];
      out[static_cast<std::size_t>(y) * out_w + x] = static_cast<float>(s / (b - a));
    }
  }
  return out;
}

// Image pixel of an output pixel's centre, and back.
Point2 out_to_image(double ox, double oy, const double p[4]) {
  return {((ox + 0.5) * kStride - p[2]) / p[0] - 0.5, ((oy + 0.5) * kStride - p[3]) / p[1] - 0.5};
}

struct Peak {
  Point2 at;     // output pixels
  double value;
};

Peak heatmap_peak(const float* heat) {
  const auto best = static_cast<int>(std::max_element(heat, heat + kOut * kOut) - heat);
  return {refine_peak(heat, kOut, kOut, best), heat[best]};
}

}  // namespace

double SpineLocation::column_at(Point2 p) const {
  if (column.size() != static_cast<std::size_t>(kOut * kOut)) return 0;
  const auto x = static_cast<int>(std::lround(((p.x + 0.5) * out_scale_x + out_offset_x) / kStride - 0.5));
  const auto y = static_cast<int>(std::lround(((p.y + 0.5) * out_scale_y + out_offset_y) / kStride - 0.5));
  if (x < 0 || y < 0 || x >= kOut || y >= kOut) return 0;
  return column[static_cast<std::size_t>(y) * kOut + x];
}

Tensor spine_finder_input(const FloatImage& img, double placement[4]) {
  const double w = static_cast<double>(img.nx()), h = static_cast<double>(img.ny());
  const double s = kSize / std::max(w, h);
  const int nw = std::clamp(static_cast<int>(std::lround(w * s)), 1, kSize);
  const int nh = std::clamp(static_cast<int>(std::lround(h * s)), 1, kSize);
  std::vector<float> small = area_resize(img, nh, nw);
  double mean = 0, sq = 0;
  for (float v : small) mean += v;
  mean /= static_cast<double>(small.size());
  for (float v : small) sq += (v - mean) * (v - mean);
  const double sd = std::max(1e-6, std::sqrt(sq / static_cast<double>(small.size())));
  const int ox = (kSize - nw) / 2, oy = (kSize - nh) / 2;
  Tensor t({1, 1, kSize, kSize}, 0.f);
  for (int y = 0; y < nh; ++y)
    for (int x = 0; x < nw; ++x)
      t.data[static_cast<std::size_t>(y + oy) * kSize + x + ox] =
          static_cast<float>((small[static_cast<std::size_t>(y) * nw + x] - mean) / sd);
  placement[0] = nw / w;
  placement[1] = nh / h;
  placement[2] = ox;
  placement[3] = oy;
  return t;
}

SpineLocation decode_spine_finder(const Tensor& out, const double p[4], std::size_t width, std::size_t height,
                                  const SpineFinderOptions& opt) {
  if (out.shape != std::vector<std::int64_t>{1, 4, kOut, kOut})
    throw model_error("spine finder output must be [1, 4, 64, 64]");
  const std::size_t plane = static_cast<std::size_t>(kOut) * kOut;
  SpineLocation loc;
  loc.out_scale_x = p[0], loc.out_scale_y = p[1], loc.out_offset_x = p[2], loc.out_offset_y = p[3];
  const Peak t1 = heatmap_peak(out.data.data()), l5 = heatmap_peak(out.data.data() + plane);
  loc.t1_confidence = std::clamp(t1.value, 0.0, 1.0);
  loc.l5_confidence = std::clamp(l5.value, 0.0, 1.0);
  loc.t1_found = t1.value >= opt.min_peak;
  loc.l5_found = l5.value >= opt.min_peak;
  loc.t1_top = out_to_image(t1.at.x, t1.at.y, p);
  loc.l5_bottom = out_to_image(l5.at.x, l5.at.y, p);
  loc.column.assign(out.data.begin() + 2 * static_cast<std::ptrdiff_t>(plane),
                    out.data.begin() + 3 * static_cast<std::ptrdiff_t>(plane));
  const float* hw = out.data.data() + 3 * plane;
  loc.hardware_pixels = static_cast<int>(std::count_if(hw, hw + plane, [&](float v) { return v > opt.hardware_probability; }));
  const double W = static_cast<double>(width), H = static_cast<double>(height);
  loc.crop = {0, 0, W, H};
  loc.hardware = loc.hardware_pixels >= opt.hardware_min_pixels;
  if (loc.hardware)
    loc.flags.push_back("hardware (implants) in view: angles over instrumented levels can be wrong");
  if (!loc.t1_found && !loc.l5_found) {
    loc.flags.push_back("no frontal spine found by the spine finder (may not be a frontal spine radiograph)");
    return loc;
  }
  if (!loc.t1_found || !loc.l5_found) {
    loc.flags.push_back(std::string("the spine T1..L5 is not all in view: ") + (loc.t1_found ? "L5" : "T1") +
                        " not found by the spine finder");
    return loc;
  }
  const double L = std::hypot(loc.l5_bottom.x - loc.t1_top.x, loc.l5_bottom.y - loc.t1_top.y);
  // A T1..L5 shorter than 2.5 % of the film is no spine a radiograph shows.
  if (loc.l5_bottom.y <= loc.t1_top.y || L < 0.025 * std::max(W, H)) {
    loc.flags.push_back("spine finder: T1 and L5 implausible (upside down, lying, or not a frontal spine film)");
    return loc;
  }
  // A spine cut by the film's lower edge (a chest film) still shows a lowest vertebra,
  // and the finder may call it L5. On the 454 AASCE images with usable landmarks L5's
  // bottom is at least 0.026 L above the lower edge (median 0.079 L), so one closer than
  // 0.02 L is taken as a spine that continues out of view.
  if (H - loc.l5_bottom.y < kEdgeMargin * L)
    loc.flags.push_back("the spine T1..L5 may not be all in view: what the spine finder takes for L5 is at the "
                        "image's lower edge");
  // Lateral extent of the column between T1 and L5 (output pixels above 0.5).
  double col_min = std::min(loc.t1_top.x, loc.l5_bottom.x), col_max = std::max(loc.t1_top.x, loc.l5_bottom.x);
  for (int y = 0; y < kOut; ++y)
    for (int x = 0; x < kOut; ++x) {
      if (loc.column[static_cast<std::size_t>(y) * kOut + x] < 0.5f) continue;
      const Point2 q = out_to_image(x, y, p);
      if (q.y < loc.t1_top.y || q.y > loc.l5_bottom.y) continue;
      col_min = std::min(col_min, q.x), col_max = std::max(col_max, q.x);
    }
  const double cx = (loc.t1_top.x + loc.l5_bottom.x) / 2;
  PixelBox b{std::min(cx - kHalfWidth * L, col_min - kColumnMargin * L), loc.t1_top.y - kTopMargin * L,
             std::max(cx + kHalfWidth * L, col_max + kColumnMargin * L), loc.l5_bottom.y + kBottomMargin * L};
  // Whole pixels, so that crop coordinates are image coordinates minus (x0, y0).
  b = {std::clamp(std::floor(b.x0), 0.0, W), std::clamp(std::floor(b.y0), 0.0, H), std::clamp(std::ceil(b.x1), 0.0, W),
       std::clamp(std::ceil(b.y1), 0.0, H)};
  // Never smaller than the landmark stages accept (check_radiograph).
  if (b.width() * b.height() < kWholeImageFraction * W * H && b.width() >= 64 && b.height() >= 128) loc.crop = b;
  return loc;
}

XraySpineFinder::XraySpineFinder(const Model& model, SpineFinderOptions options) : model_(model), options_(options) {
  const auto& ps = model.card().patch_size;
  if (ps.size() != 2 || ps[0] != kSize || ps[1] != kSize)
    throw model_error(model.card().name + ": spine finder must take 256 x 256 inputs");
}

SpineLocation XraySpineFinder::find(const FloatImage& img) const {
  double placement[4];
  const Tensor input = spine_finder_input(img, placement);
  return decode_spine_finder(model_.forward(input), placement, img.nx(), img.ny(), options_);
}

std::vector<std::string> vertebrae_off_column(const SpineLocation& loc, const std::vector<Point2>& points,
                                              double min_probability) {
  std::vector<std::string> off;
  if (!loc.t1_found || !loc.l5_found || points.size() != static_cast<std::size_t>(kCobbLandmarks)) return off;
  const double step_x = kStride / loc.out_scale_x, step_y = kStride / loc.out_scale_y;  // image px per output px
  for (int v = 0; v < kCobbVertebrae; ++v) {
    Point2 c;
    for (int k = 0; k < 4; ++k) c.x += points[4 * v + k].x / 4, c.y += points[4 * v + k].y / 4;
    double best = 0;
    for (int dy = -1; dy <= 1; ++dy)
      for (int dx = -1; dx <= 1; ++dx) best = std::max(best, loc.column_at({c.x + dx * step_x, c.y + dy * step_y}));
    if (best < min_probability) off.push_back(cobb_vertebra_name(v));
  }
  return off;
}

bool inverted_polarity(const FloatImage& img, const SpineLocation& loc) {
  if (!loc.t1_found || !loc.l5_found || loc.column.empty()) return false;
  // Every few pixels is plenty for two means over a crop of a million pixels or more.
  const auto step = static_cast<std::size_t>(std::max(1.0, std::sqrt(loc.crop.width() * loc.crop.height() / 250000.0)));
  double col = 0, rest = 0;
  std::size_t n_col = 0, n_rest = 0;
  for (auto y = static_cast<std::size_t>(loc.crop.y0); y < static_cast<std::size_t>(loc.crop.y1) && y < img.ny(); y += step)
    for (auto x = static_cast<std::size_t>(loc.crop.x0); x < static_cast<std::size_t>(loc.crop.x1) && x < img.nx(); x += step) {
      const double v = img.at(x, y);
      if (loc.column_at({static_cast<double>(x), static_cast<double>(y)}) > 0.5) col += v, ++n_col;
      else rest += v, ++n_rest;
    }
  return n_col > 0 && n_rest > 0 && col / n_col < rest / n_rest;
}

FloatImage invert_grey(const FloatImage& img) {
  const auto r = intensity_range(img);
  FloatImage out = img;
  for (auto& v : out.voxels) v = r.max + r.min - v;
  return out;
}

FloatImage crop_image(const FloatImage& img, const PixelBox& box) {
  const auto x0 = static_cast<std::size_t>(std::clamp(std::floor(box.x0), 0.0, static_cast<double>(img.nx())));
  const auto y0 = static_cast<std::size_t>(std::clamp(std::floor(box.y0), 0.0, static_cast<double>(img.ny())));
  const auto x1 = static_cast<std::size_t>(std::clamp(std::ceil(box.x1), 0.0, static_cast<double>(img.nx())));
  const auto y1 = static_cast<std::size_t>(std::clamp(std::ceil(box.y1), 0.0, static_cast<double>(img.ny())));
  if (x1 <= x0 || y1 <= y0) throw input_error("empty crop");
  FloatImage out(make_geometry_2d(x1 - x0, y1 - y0, {img.geometry.spacing[0], img.geometry.spacing[1]}));
  for (std::size_t y = y0; y < y1; ++y)
    std::copy(img.voxels.begin() + static_cast<std::ptrdiff_t>(y * img.nx() + x0),
              img.voxels.begin() + static_cast<std::ptrdiff_t>(y * img.nx() + x1),
              out.voxels.begin() + static_cast<std::ptrdiff_t>((y - y0) * (x1 - x0)));
  return out;
}

}  // namespace spine
