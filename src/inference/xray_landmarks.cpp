// Landmark inference on frontal radiographs: preprocessing by the model's contract,
// decoding of vertebra heatmaps and corner offsets, and plausibility flags.
#include "spine/xray_landmarks.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

#include "spine/error.hpp"
#include "heatmap.hpp"

namespace spine {

Point2 refine_peak(const float* heat, int h, int w, int best) {
  const int cy = best / w, cx = best % w;
  double sw = 0, sx = 0, sy = 0;
  for (int y = std::max(0, cy - 2); y <= std::min(h - 1, cy + 2); ++y)
    for (int x = std::max(0, cx - 2); x <= std::min(w - 1, cx + 2); ++x) {
      const double wt = std::max(0.f, heat[static_cast<std::size_t>(y) * w + x]);
      sw += wt, sx += wt * x, sy += wt * y;
    }
  return {sw > 1e-6 ? sx / sw : cx, sw > 1e-6 ? sy / sw : cy};
}

float bilinear_zero_padded(const float* plane, int h, int w, double x, double y) {
  const int x0 = static_cast<int>(std::floor(x)), y0 = static_cast<int>(std::floor(y));
  const double fx = x - x0, fy = y - y0;
  double acc = 0;
  for (int dy = 0; dy < 2; ++dy)
    for (int dx = 0; dx < 2; ++dx) {
      const int xi = x0 + dx, yi = y0 + dy;
      if (xi < 0 || yi < 0 || xi >= w || yi >= h) continue;
      acc += (dx ? fx : 1 - fx) * (dy ? fy : 1 - fy) * plane[static_cast<std::size_t>(yi) * w + xi];
    }
  return static_cast<float>(acc);
}

void zscore(float* data, std::size_t n) {
  double sum = 0, sq = 0;
  for (std::size_t i = 0; i < n; ++i) sum += data[i];
  const double mean = sum / n;
  for (std::size_t i = 0; i < n; ++i) sq += (data[i] - mean) * (data[i] - mean);
  const double sd = std::max(std::sqrt(sq / n), 1e-6);
  for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<float>((data[i] - mean) / sd);
}

Tensor mirrored(const Tensor& t) {
  Tensor out = t;
  const std::int64_t w = t.shape[3], rows = t.numel() / w;
  for (std::int64_t r = 0; r < rows; ++r)
    std::reverse_copy(t.data.begin() + r * w, t.data.begin() + (r + 1) * w, out.data.begin() + r * w);
  return out;
}

namespace {

constexpr int kCacheH = 1024, kCacheW = 512, kInputH = 512, kInputW = 256;
constexpr int kVertebrae = kCobbVertebrae;
constexpr double kMinCandidateDistance = 4.0;  // output pixels between alternative peaks
// Second stage (scripts/cobb/fine.py).
constexpr int kCropH = 80, kCropW = 128;
constexpr double kCropVertebraWidth = 80.0, kCropScaleMin = 0.3, kCropScaleMax = 4.0;

// Bilinear resize with torch's align_corners=False rule (source index clamped at 0).
std::vector<float> resize_bilinear(const FloatImage& img, int out_h, int out_w) {
  const int in_w = static_cast<int>(img.nx()), in_h = static_cast<int>(img.ny());
  const float sx = static_cast<float>(in_w) / out_w, sy = static_cast<float>(in_h) / out_h;
  struct Tap {
    int i0, i1;
    float l1;
  };
  auto taps = [](int out, int in, float scale) {
    std::vector<Tap> t(out);
    for (int o = 0; o < out; ++o) {
      float src = scale * (o + 0.5f) - 0.5f;
      if (src < 0) src = 0;
      const int i0 = std::min(static_cast<int>(src), in - 1);
      const int i1 = i0 + (i0 < in - 1 ? 1 : 0);
      t[o] = {i0, i1, src - i0};
    }
    return t;
  };
  const auto tx = taps(out_w, in_w, sx), ty = taps(out_h, in_h, sy);
  std::vector<float> out(static_cast<std::size_t>(out_h) * out_w);
  for (int y = 0; y < out_h; ++y) {
    const float* r0 = img.voxels.data() + static_cast<std::size_t>(ty[y].i0) * in_w;
    const float* r1 = img.voxels.data() + static_cast<std::size_t>(ty[y].i1) * in_w;
    const float ly = ty[y].l1;
    for (int x = 0; x < out_w; ++x) {
      const auto& t = tx[x];
      const float top = (1 - t.l1) * r0[t.i0] + t.l1 * r0[t.i1];
      const float bottom = (1 - t.l1) * r1[t.i0] + t.l1 * r1[t.i1];
      out[static_cast<std::size_t>(y) * out_w + x] = (1 - ly) * top + ly * bottom;
    }
  }
  return out;
}

struct HeatmapPeaks {
  std::vector<Point2> centres;  // output pixels, peak refined by a 5 x 5 weighted centroid
  std::vector<double> peaks;
  std::vector<int> replaced;    // vertebrae whose chosen peak is not their heatmap's maximum
};

struct Candidate {
  Point2 centre;
  double peak;
};

// The strongest local maxima (3 x 3) of one heatmap, the global maximum first.
std::vector<Candidate> candidates(const float* heat, int h, int w, int count) {
  std::vector<std::pair<float, int>> maxima;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const float v = heat[static_cast<std::size_t>(y) * w + x];
      if (v < 0.05f) continue;
      bool is_max = true;
      for (int dy = -1; dy <= 1 && is_max; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int yy = y + dy, xx = x + dx;
          if ((dy || dx) && yy >= 0 && xx >= 0 && yy < h && xx < w && heat[static_cast<std::size_t>(yy) * w + xx] > v) {
            is_max = false;
            break;
          }
        }
      if (is_max) maxima.emplace_back(v, y * w + x);
    }
  std::sort(maxima.begin(), maxima.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  const auto best = static_cast<int>(std::max_element(heat, heat + static_cast<std::size_t>(h) * w) - heat);
  std::vector<Candidate> out{{refine_peak(heat, h, w, best), heat[best]}};
  for (const auto& [v, idx] : maxima) {
    if (static_cast<int>(out.size()) >= count) break;
    // Secondary maxima on the same blob are not alternatives: keep candidates apart.
    const Point2 c = refine_peak(heat, h, w, idx);
    const bool distinct = std::all_of(out.begin(), out.end(), [&](const Candidate& o) {
      return std::hypot(o.centre.x - c.x, o.centre.y - c.y) >= kMinCandidateDistance;
    });
    if (distinct) out.push_back({c, v});
  }
  return out;
}

HeatmapPeaks heatmap_peaks(const Tensor& out, bool sequence_constraint) {
  const int h = static_cast<int>(out.shape[2]), w = static_cast<int>(out.shape[3]);
  const std::size_t plane = static_cast<std::size_t>(h) * w;
  std::vector<std::vector<Candidate>> cand(kVertebrae);
  for (int v = 0; v < kVertebrae; ++v) cand[v] = candidates(out.data.data() + v * plane, h, w, sequence_constraint ? 6 : 1);
  HeatmapPeaks r;
  std::vector<int> choice(kVertebrae, 0);
  if (sequence_constraint) {
    // Expected gap between neighbours: the median gap of the plain maxima (robust to a few
    // misplaced ones). Cost of a path: -log(peak) per vertebra plus, per neighbour pair,
    // 4 * log(gap / expected)^2, and a prohibitive cost when a vertebra is not below the one above.
    std::vector<double> gaps;
    for (int v = 1; v < kVertebrae; ++v)
      gaps.push_back(std::hypot(cand[v][0].centre.x - cand[v - 1][0].centre.x, cand[v][0].centre.y - cand[v - 1][0].centre.y));
    std::nth_element(gaps.begin(), gaps.begin() + gaps.size() / 2, gaps.end());
    const double expected = std::max(1.0, gaps[gaps.size() / 2]);
    auto unary = [](const Candidate& c) { return -std::log(std::max(c.peak, 1e-3)); };
    auto pair_cost = [&](const Candidate& a, const Candidate& b) {
      const double dy = b.centre.y - a.centre.y;
      if (dy < 0.3 * expected) return 1e3;
      const double l = std::log(std::hypot(b.centre.x - a.centre.x, dy) / expected);
      return 4 * l * l;
    };
    std::vector<std::vector<double>> cost(kVertebrae);
    std::vector<std::vector<int>> back(kVertebrae);
    for (const auto& c : cand[0]) cost[0].push_back(unary(c));
    for (int v = 1; v < kVertebrae; ++v) {
      for (const auto& c : cand[v]) {
        double best = 1e18;
        int arg = 0;
        for (std::size_t p = 0; p < cand[v - 1].size(); ++p) {
          const double t = cost[v - 1][p] + pair_cost(cand[v - 1][p], c);
          if (t < best) best = t, arg = static_cast<int>(p);
        }
        cost[v].push_back(best + unary(c));
        back[v].push_back(arg);
      }
    }
    choice[kVertebrae - 1] = static_cast<int>(std::min_element(cost.back().begin(), cost.back().end()) - cost.back().begin());
    for (int v = kVertebrae - 1; v > 0; --v) choice[v - 1] = back[v][choice[v]];
  }
  for (int v = 0; v < kVertebrae; ++v) {
    r.centres.push_back(cand[v][choice[v]].centre);
    r.peaks.push_back(cand[v][choice[v]].peak);
    if (choice[v] != 0) r.replaced.push_back(v);
  }
  return r;
}

// Averages `output` with the prediction for the mirrored image, mapped back: heatmaps are
// mirrored; corner offsets are mirrored, left and right corners swap (TL<->TR, BL<->BR)
// and their x components change sign.
void average_with_mirror(Tensor& output, const Tensor& mirror_output) {
  const Tensor m = mirrored(mirror_output);
  const std::size_t plane = static_cast<std::size_t>(output.shape[2] * output.shape[3]);
  for (int v = 0; v < kVertebrae; ++v) {
    float* dst = output.data.data() + v * plane;
    const float* src = m.data.data() + v * plane;
    for (std::size_t i = 0; i < plane; ++i) dst[i] = (dst[i] + src[i]) / 2;
  }
  static constexpr int kSwap[4] = {1, 0, 3, 2};
  for (int c = 0; c < 4; ++c)
    for (int xy = 0; xy < 2; ++xy) {
      const float sign = xy == 0 ? -1.f : 1.f;
      float* dst = output.data.data() + (kVertebrae + 2 * c + xy) * plane;
      const float* src = m.data.data() + (kVertebrae + 2 * kSwap[c] + xy) * plane;
      for (std::size_t i = 0; i < plane; ++i) dst[i] = (dst[i] + sign * src[i]) / 2;
    }
}

// Image pixels <-> working-image (1024 x 512) pixels, half-pixel centres.
Point2 to_working(Point2 p, std::size_t width, std::size_t height) {
  return {(p.x + 0.5) * kCacheW / double(width) - 0.5, (p.y + 0.5) * kCacheH / double(height) - 0.5};
}
Point2 from_working(Point2 p, std::size_t width, std::size_t height) {
  return {(p.x + 0.5) * double(width) / kCacheW - 0.5, (p.y + 0.5) * double(height) / kCacheH - 0.5};
}

Tensor model_input_from_working(const std::vector<float>& cache) {
  Tensor t({1, 1, kInputH, kInputW});
  for (int y = 0; y < kInputH; ++y)
    for (int x = 0; x < kInputW; ++x) {
      const std::size_t a = static_cast<std::size_t>(2 * y) * kCacheW + 2 * x;
      t.data[static_cast<std::size_t>(y) * kInputW + x] =
          (cache[a] + cache[a + 1] + cache[a + kCacheW] + cache[a + kCacheW + 1]) / 4.f;
    }
  zscore(t.data.data(), t.data.size());
  return t;
}

XrayCornerCrops corner_crops_from_working(const std::vector<float>& cache, const std::vector<Point2>& points_px,
                                          std::size_t width, std::size_t height, double zoom = 1.0) {
  XrayCornerCrops r;
  r.crops = Tensor({kVertebrae, 1, kCropH, kCropW});
  const std::size_t plane = static_cast<std::size_t>(kCropH) * kCropW;
  for (int v = 0; v < kVertebrae; ++v) {
    Point2 c[4];
    for (int k = 0; k < 4; ++k) c[k] = to_working(points_px[4 * v + k], width, height);
    const Point2 centre{(c[0].x + c[1].x + c[2].x + c[3].x) / 4, (c[0].y + c[1].y + c[2].y + c[3].y) / 4};
    const double endplate_width = (std::hypot(c[1].x - c[0].x, c[1].y - c[0].y) + std::hypot(c[3].x - c[2].x, c[3].y - c[2].y)) / 2;
    const double s = std::clamp(zoom * endplate_width / kCropVertebraWidth, kCropScaleMin, kCropScaleMax);
    float* dst = r.crops.data.data() + v * plane;
    for (int y = 0; y < kCropH; ++y)
      for (int x = 0; x < kCropW; ++x)
        dst[static_cast<std::size_t>(y) * kCropW + x] = bilinear_zero_padded(
            cache.data(), kCacheH, kCacheW, centre.x + s * (x - (kCropW - 1) / 2.0), centre.y + s * (y - (kCropH - 1) / 2.0));
    zscore(dst, plane);
    r.centres.push_back(centre);
    r.scales.push_back(s);
  }
  return r;
}

// Averages corner heatmaps [17, 4, h, w] with those of the mirrored crops, mapped back
// (mirrored, and left and right corners swapped).
void average_corners_with_mirror(Tensor& output, const Tensor& mirror_output) {
  const Tensor m = mirrored(mirror_output);
  static constexpr int kSwap[4] = {1, 0, 3, 2};
  const std::size_t plane = static_cast<std::size_t>(output.shape[2] * output.shape[3]);
  for (std::int64_t v = 0; v < output.shape[0]; ++v)
    for (int c = 0; c < 4; ++c) {
      float* dst = output.data.data() + (v * 4 + c) * plane;
      const float* src = m.data.data() + (v * 4 + kSwap[c]) * plane;
      for (std::size_t i = 0; i < plane; ++i) dst[i] = (dst[i] + src[i]) / 2;
    }
}

}  // namespace

std::vector<float> xray_working_image(const FloatImage& radiograph) { return resize_bilinear(radiograph, kCacheH, kCacheW); }

Tensor xray_model_input(const FloatImage& radiograph) {
  return model_input_from_working(resize_bilinear(radiograph, kCacheH, kCacheW));
}

XrayCornerCrops xray_corner_crops(const FloatImage& radiograph, const std::vector<Point2>& points_px) {
  if (points_px.size() != static_cast<std::size_t>(kCobbLandmarks)) throw model_error("68 landmarks needed for corner crops");
  return corner_crops_from_working(resize_bilinear(radiograph, kCacheH, kCacheW), points_px, radiograph.nx(), radiograph.ny());
}

namespace {

// One corner-stage pass decoded: per landmark, its heatmap's peak and where that lies in
// the image.
struct CornerReading {
  std::vector<Point2> points;  // 68, image pixels
  std::vector<double> peaks;   // 68
};

CornerReading read_corner_heatmaps(const Tensor& out, const XrayCornerCrops& crops, std::size_t width,
                                   std::size_t height, int stride) {
  if (out.shape.size() != 4 || out.shape[0] != kVertebrae || out.shape[1] != 4)
    throw model_error("corner model output must be [17, 4, h, w]");
  const int h = static_cast<int>(out.shape[2]), w = static_cast<int>(out.shape[3]);
  const std::size_t plane = static_cast<std::size_t>(h) * w;
  CornerReading r;
  for (int v = 0; v < kVertebrae; ++v)
    for (int c = 0; c < 4; ++c) {
      const float* heat = out.data.data() + (v * 4 + c) * plane;
      const auto best = static_cast<int>(std::max_element(heat, heat + plane) - heat);
      const Point2 p = refine_peak(heat, h, w, best);
      const double cx = (p.x + 0.5) * stride - 0.5, cy = (p.y + 0.5) * stride - 0.5;  // crop pixels
      const Point2 working{crops.centres[v].x + crops.scales[v] * (cx - (kCropW - 1) / 2.0),
                           crops.centres[v].y + crops.scales[v] * (cy - (kCropH - 1) / 2.0)};
      r.points.push_back(from_working(working, width, height));
      r.peaks.push_back(heat[best]);
    }
  return r;
}

// Each landmark at the mean of the readings whose peak reaches min_peak, with the mean of
// those peaks; a landmark no reading places keeps the first stage's position and is listed.
void apply_corner_readings(const std::vector<CornerReading>& readings, double min_peak, XrayLandmarks& lm) {
  static const char* kCorner[4] = {"TL", "TR", "BL", "BR"};
  lm.landmark_confidence.assign(kCobbLandmarks, 0.0);
  for (int k = 0; k < kCobbLandmarks; ++k) {
    double sx = 0, sy = 0, sp = 0, best = 0;
    int n = 0;
    for (const auto& r : readings) {
      best = std::max(best, r.peaks[k]);
      if (r.peaks[k] < min_peak) continue;
      sx += r.points[k].x, sy += r.points[k].y, sp += r.peaks[k], ++n;
    }
    const double peak = n ? sp / n : best;
    lm.landmark_confidence[k] = std::clamp(std::min(lm.confidence[k / 4], peak), 0.0, 1.0);
    if (n == 0) {
      lm.corners_unrefined.push_back(cobb_vertebra_name(k / 4) + " " + kCorner[k % 4]);
      continue;
    }
    lm.points[k] = {sx / n, sy / n};
  }
}

}  // namespace

void apply_corner_heatmaps(const Tensor& out, const XrayCornerCrops& crops, std::size_t width, std::size_t height,
                           int stride, double min_peak, XrayLandmarks& lm) {
  apply_corner_readings({read_corner_heatmaps(out, crops, width, height, stride)}, min_peak, lm);
}

namespace {

void check_landmark_output(const Tensor& out) {
  if (out.shape.size() != 4 || out.shape[0] != 1 || out.shape[1] != kVertebrae + 8)
    throw model_error("landmark model output must be [1, 25, h, w]");
}

// Corners from the offsets at the chosen centres, and the plausibility flags.
XrayLandmarks decode_at(const Tensor& out, const HeatmapPeaks& hp, std::size_t width, std::size_t height, int stride,
                        double offset_scale, const XrayLandmarkOptions& opt) {
  const int h = static_cast<int>(out.shape[2]), w = static_cast<int>(out.shape[3]);
  const std::size_t plane = static_cast<std::size_t>(h) * w;
  XrayLandmarks res;
  const std::vector<Point2>& centres = hp.centres;
  for (int v = 0; v < kVertebrae; ++v) {
    const double rx = centres[v].x, ry = centres[v].y;
    res.confidence.push_back(std::clamp(hp.peaks[v], 0.0, 1.0));
    for (int c = 0; c < 4; ++c) res.landmark_confidence.push_back(res.confidence.back());
    for (int c = 0; c < 4; ++c) {
      const float* ox = out.data.data() + (kVertebrae + 2 * c) * plane;
      const float* oy = out.data.data() + (kVertebrae + 2 * c + 1) * plane;
      const double px = rx + offset_scale * bilinear_zero_padded(ox, h, w, rx, ry);
      const double py = ry + offset_scale * bilinear_zero_padded(oy, h, w, rx, ry);
      // output pixels -> model input pixels -> original image pixels (half-pixel centres)
      const double ix = (px + 0.5) * stride - 0.5, iy = (py + 0.5) * stride - 0.5;
      res.points.push_back({(ix + 0.5) * double(width) / kInputW - 0.5, (iy + 0.5) * double(height) / kInputH - 0.5});
    }
  }

  // Plausibility: order, spacing, confidence.
  std::vector<std::string> low, missing;
  for (int v = 0; v < kVertebrae; ++v) {
    if (res.confidence[v] < opt.missing_confidence) missing.push_back(cobb_vertebra_name(v));
    else if (res.confidence[v] < opt.low_confidence) low.push_back(cobb_vertebra_name(v));
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
    return s;
  };
  if (!missing.empty()) res.flags.push_back("vertebra missing: " + join(missing));
  for (int v : hp.replaced) res.sequence_adjusted.push_back(cobb_vertebra_name(v));
  if (!low.empty()) res.flags.push_back("low confidence: " + join(low));
  bool ordered = true;
  std::vector<double> gaps;
  for (int v = 1; v < kVertebrae; ++v) {
    const double dy = centres[v].y - centres[v - 1].y;
    if (dy <= 0) ordered = false;
    gaps.push_back(std::hypot(centres[v].x - centres[v - 1].x, dy));
  }
  if (!ordered) res.flags.push_back("vertebra order broken");
  std::vector<double> sorted = gaps;
  std::sort(sorted.begin(), sorted.end());
  const double median_gap = sorted[sorted.size() / 2];
  for (std::size_t g = 0; g < gaps.size() && ordered; ++g) {
    if (gaps[g] < 0.4 * median_gap || gaps[g] > 2.5 * median_gap) {
      res.flags.push_back("irregular vertebra spacing at " + cobb_vertebra_name(static_cast<int>(g)) + "/" +
                          cobb_vertebra_name(static_cast<int>(g) + 1));
      break;
    }
  }
  double mean_conf = 0;
  for (double c : res.confidence) mean_conf += c / kVertebrae;
  if (mean_conf < 0.25) res.flags.push_back("image may not be a frontal spine radiograph (mean confidence " +
                                            std::to_string(mean_conf).substr(0, 4) + ")");
  return res;
}

// First-stage output pixels <-> working-image pixels: the output is at `stride` of the
// model input, which is the working image pooled 2 x 2 (half-pixel centres throughout).
Point2 output_to_working(Point2 p, int stride) { return {(p.x + 0.5) * 2 * stride - 0.5, (p.y + 0.5) * 2 * stride - 0.5}; }
Point2 working_to_output(Point2 p, int stride) { return {(p.x + 0.5) / (2 * stride) - 0.5, (p.y + 0.5) / (2 * stride) - 0.5}; }

// The chain after the level anchors' re-count. A vertebra the re-count placed has as its
// confidence the strongest of the 17 heatmaps at its centre (that some vertebra is there),
// at most the anchors' posterior, and counts as moved off its heatmap's maximum.
HeatmapPeaks recounted(const HeatmapPeaks& hp, const LevelRecount& rc, const Tensor& out, int stride) {
  const int h = static_cast<int>(out.shape[2]), w = static_cast<int>(out.shape[3]);
  const std::size_t plane = static_cast<std::size_t>(h) * w;
  HeatmapPeaks r;
  for (int v = 0; v < kVertebrae; ++v) {
    const Point2 c = working_to_output(rc.centres[v], stride);
    r.centres.push_back(c);
    const int s = rc.source[v];
    if (s >= 0) {
      r.peaks.push_back(hp.peaks[s]);
      if (std::find(hp.replaced.begin(), hp.replaced.end(), s) != hp.replaced.end()) r.replaced.push_back(v);
      continue;
    }
    double best = 0;
    for (int k = 0; k < kVertebrae; ++k)
      best = std::max(best, double(bilinear_zero_padded(out.data.data() + k * plane, h, w, c.x, c.y)));
    r.peaks.push_back(std::min(best, std::min(rc.top_posterior, rc.bottom_posterior)));
    r.replaced.push_back(v);
  }
  return r;
}

}  // namespace

XrayLandmarks decode_xray_landmarks(const Tensor& out, std::size_t width, std::size_t height, int stride,
                                    double offset_scale, const XrayLandmarkOptions& opt) {
  check_landmark_output(out);
  return decode_at(out, heatmap_peaks(out, opt.sequence_constraint), width, height, stride, offset_scale, opt);
}

XrayLandmarkDetector::XrayLandmarkDetector(const Model& model, XrayLandmarkOptions options, const Model* corner_model,
                                           const Model* anchor_model)
    : model_(model), corner_model_(corner_model), options_(options) {
  if (anchor_model) anchors_.emplace(*anchor_model);
  if (corner_model_) {
    const auto& p = corner_model_->card().patch_size;
    if (p.size() != 2 || p[0] != kCropW || p[1] != kCropH)
      throw model_error(corner_model_->card().name + ": corner model must take 128 x 80 crops");
    const auto& norm = corner_model_->card().normalisation;
    if (!norm.is_object() || norm.value("vertebra_width_px", 0.0) != kCropVertebraWidth)
      throw model_error(corner_model_->card().name + ": corner model must show vertebrae 80 crop pixels wide");
    corner_stride_ = corner_model_->card().raw.value("output", nlohmann::json::object()).value("stride", 2);
  }
  const auto& out = model.card().raw.value("output", nlohmann::json::object());
  stride_ = out.value("stride", 4);
  offset_scale_ = out.value("offset_scale", 16.0);
  const auto& p = model.card().patch_size;
  if (p.size() != 2 || p[0] != kInputW || p[1] != kInputH)
    throw model_error(model.card().name + ": landmark model must take 256 x 512 inputs");
}

void flag_curve_reliability(const CobbAngles& a, double low_confidence, XrayLandmarks& lm) {
  if (lm.landmark_confidence.size() != static_cast<std::size_t>(kCobbLandmarks)) return;
  // The angle is measured on the upper end's upper endplate (TL, TR) and the lower end's
  // lower endplate (BL, BR).
  const int u = a.major.upper_end, l = a.major.lower_end;
  const double cu = std::min(lm.landmark_confidence[4 * u], lm.landmark_confidence[4 * u + 1]);
  const double cl = std::min(lm.landmark_confidence[4 * l + 2], lm.landmark_confidence[4 * l + 3]);
  for (const auto& [v, c] : {std::pair{u, cu}, std::pair{l, cl}})
    if (c < low_confidence)
      lm.flags.push_back("end vertebra " + cobb_vertebra_name(v) + " of the major curve is low-confidence (" +
                         std::to_string(c).substr(0, 4) + ")");
  // A vertebra the sequence constraint moved is usually right (it is common: on 90 of 122
  // training images one was moved), but when it is an end vertebra the angle rests on it:
  // on those training images the major-angle error was 4.45 degrees against 2.29 when
  // only other vertebrae were moved. So only that case is flagged.
  for (int v : {u, l}) {
    const std::string name = cobb_vertebra_name(v);
    if (std::find(lm.sequence_adjusted.begin(), lm.sequence_adjusted.end(), name) != lm.sequence_adjusted.end())
      lm.flags.push_back("end vertebra " + name +
                         " of the major curve was placed by the sequence constraint, not at its strongest response");
  }
}

void check_radiograph(const FloatImage& img) {
  if (img.geometry.dimension != 2)
    throw input_error("is a 3D image (" + std::to_string(img.nz()) + " slices); spine-cobb needs a 2D radiograph");
  if (img.nx() < 64 || img.ny() < 128)
    throw input_error("image is too small (" + std::to_string(img.nx()) + " x " + std::to_string(img.ny()) +
                      " pixels; at least 64 x 128 needed)");
  if (img.voxels.size() > 100'000'000ULL)
    throw input_error("image is too large (" + std::to_string(img.nx()) + " x " + std::to_string(img.ny()) +
                      " pixels; at most 100 megapixels)");
  if (!std::all_of(img.voxels.begin(), img.voxels.end(), [](float v) { return std::isfinite(v); }))
    throw input_error("image contains NaN or infinite values");
  const auto r = intensity_range(img);
  if (!(r.max > r.min)) throw input_error("image is blank (constant intensity)");
}

namespace {

// A stage's prediction for `input`, averaged (flip) with its prediction for the mirrored
// input, each side read by part of its networks (split: split_ensemble_passes) or by all
// of them; `average(a, b)` maps b, a prediction for the mirrored input, back and averages
// it into a (each stage's outputs map back differently).
template <class Average>
Tensor read_both_sides(const Model& model, const Tensor& input, bool flip, bool split, Average average) {
  if (!flip) return model.forward(input);
  const int n = model.member_count();
  if (split && n >= 2) {
    const Tensor flipped = mirrored(input);
    std::optional<Tensor> side[2];  // the image's, the mirror's: each a weighted mean
    for (const EnsemblePass& p : split_ensemble_passes(n)) {
      const Tensor t = model.forward_member(p.member, p.mirrored ? flipped : input);
      const auto w = static_cast<float>(2 * p.weight);  // each side's weights add up to 1/2
      std::optional<Tensor>& s = side[p.mirrored ? 1 : 0];
      if (!s) {
        s = t;
        for (float& v : s->data) v *= w;
        continue;
      }
      if (t.shape != s->shape) throw model_error(model.card().name + ": its networks' outputs differ in shape");
      for (std::size_t k = 0; k < t.data.size(); ++k) s->data[k] += w * t.data[k];
    }
    average(*side[0], *side[1]);
    return std::move(*side[0]);
  }
  Tensor out = model.forward(input);
  average(out, model.forward(mirrored(input)));
  return out;
}

}  // namespace

std::vector<EnsemblePass> split_ensemble_passes(int members) {
  if (members < 2) throw model_error("a split reading needs an ensemble of two or more networks");
  const double w = 1.0 / members;
  std::vector<EnsemblePass> passes;
  for (int i = 0; i + members % 2 < members; ++i) passes.push_back({i, i % 2 == 1, w});
  if (members % 2 == 1) {
    passes.push_back({members - 1, false, w / 2});
    passes.push_back({members - 1, true, w / 2});
  }
  return passes;
}

std::vector<int> combine_stage_corners(const std::vector<Point2>& first, std::vector<Point2>& second,
                                       double second_stage_weight, double disagreement_deg) {
  if (first.size() != static_cast<std::size_t>(kCobbLandmarks) || second.size() != first.size())
    throw model_error("68 landmarks needed from both stages");
  std::vector<int> held_back;
  for (int v = 0; v < kVertebrae; ++v) {
    double w = second_stage_weight;
    if (disagreement_deg > 0) {
      const double d = std::remainder(vertebra_tilt_deg(second, v) - vertebra_tilt_deg(first, v), 360.0);
      if (std::fabs(d) > disagreement_deg) {
        w *= disagreement_deg / std::fabs(d);
        held_back.push_back(v);
      }
    }
    for (int k = 4 * v; k < 4 * v + 4; ++k) {
      const auto i = static_cast<std::size_t>(k);
      second[i] = {first[i].x + w * (second[i].x - first[i].x), first[i].y + w * (second[i].y - first[i].y)};
    }
  }
  return held_back;
}

XrayLandmarks XrayLandmarkDetector::detect(const FloatImage& img, bool refine_corners) const {
  check_radiograph(img);
  const std::vector<float> working = resize_bilinear(img, kCacheH, kCacheW);
  const Tensor input = model_input_from_working(working);
  using Reading = XrayLandmarkOptions::EnsembleReading;
  Tensor output = read_both_sides(model_, input, options_.flip_averaging, options_.ensemble_reading == Reading::split,
                                  average_with_mirror);
  check_landmark_output(output);
  HeatmapPeaks hp = heatmap_peaks(output, options_.sequence_constraint);
  std::optional<LevelRecount> rc;
  if (anchors_) {
    std::vector<Point2> chain;
    for (const Point2& c : hp.centres) chain.push_back(output_to_working(c, stride_));
    rc = anchors_->recount(working, chain, options_.flip_averaging);
    if (!rc->change.empty()) hp = recounted(hp, *rc, output, stride_);
  }
  XrayLandmarks lm = decode_at(output, hp, img.nx(), img.ny(), stride_, offset_scale_, options_);
  if (rc) {
    lm.levels = XrayLevelReading{rc->top_reading, rc->bottom_reading, rc->top_posterior, rc->bottom_posterior,
                                 rc->change};
    lm.flags.insert(lm.flags.end(), rc->flags.begin(), rc->flags.end());
  }
  if (corner_model_ && refine_corners) {
    // One pass per zoom, each with its mirrored pass; the corners read at every zoom
    // averaged (see XrayLandmarkOptions::corner_zooms).
    std::vector<CornerReading> readings;
    for (double zoom : options_.corner_zooms) {
      const XrayCornerCrops crops = corner_crops_from_working(working, lm.points, img.nx(), img.ny(), zoom);
      Tensor heat = read_both_sides(*corner_model_, crops.crops, options_.flip_averaging,
                                    options_.ensemble_reading != Reading::all, average_corners_with_mirror);
      readings.push_back(read_corner_heatmaps(heat, crops, img.nx(), img.ny(), corner_stride_));
    }
    const std::vector<Point2> first_stage_points = lm.points;
    apply_corner_readings(readings, options_.missing_confidence, lm);
    for (int v : combine_stage_corners(first_stage_points, lm.points, options_.second_stage_weight,
                                       options_.stage_disagreement_deg))
      lm.second_stage_held_back.push_back(cobb_vertebra_name(v));
  }
  // Last, on the corners the angles are measured on, whichever stages placed them.
  if (options_.centreline_weight > 0 || options_.centreline_end_weight > 0)
    lm.centreline_tilt =
        blend_tilts_with_centreline(lm.points, options_.centreline_weight, options_.centreline_end_weight);
  return lm;
}

}  // namespace spine
