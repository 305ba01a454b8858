// Landmark inference on frontal radiographs: preprocessing by the model's contract,
// decoding of vertebra heatmaps and corner offsets, and plausibility flags.
#include "spine/xray_landmarks.hpp"

#include <algorithm>
#include <cmath>

#include "spine/error.hpp"

namespace spine {
namespace {

constexpr int kCacheH = 1024, kCacheW = 512, kInputH = 512, kInputW = 256;
constexpr int kVertebrae = kCobbVertebrae;
constexpr double kRefineHalfFactor = 1.1;  // crop half-size per local vertebra spacing (refine.py)

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

struct HeatmapPeaks {
  std::vector<Point2> centres;  // output pixels, argmax refined by a 5 x 5 weighted centroid
  std::vector<double> peaks;
};

HeatmapPeaks heatmap_peaks(const Tensor& out) {
  const int h = static_cast<int>(out.shape[2]), w = static_cast<int>(out.shape[3]);
  const std::size_t plane = static_cast<std::size_t>(h) * w;
  HeatmapPeaks r;
  for (int v = 0; v < kVertebrae; ++v) {
    const float* heat = out.data.data() + v * plane;
    const auto best = static_cast<int>(std::max_element(heat, heat + plane) - heat);
    const int cy = best / w, cx = best % w;
    double sw = 0, sx = 0, sy = 0;
    for (int y = std::max(0, cy - 2); y <= std::min(h - 1, cy + 2); ++y)
      for (int x = std::max(0, cx - 2); x <= std::min(w - 1, cx + 2); ++x) {
        const double wt = std::max(0.f, heat[static_cast<std::size_t>(y) * w + x]);
        sw += wt, sx += wt * x, sy += wt * y;
      }
    r.centres.push_back({sw > 1e-6 ? sx / sw : cx, sw > 1e-6 ? sy / sw : cy});
    r.peaks.push_back(heat[best]);
  }
  return r;
}

}  // namespace

XrayWorkingImage xray_working_image(const FloatImage& radiograph) {
  XrayWorkingImage w;
  w.pixels = resize_bilinear(radiograph, kCacheH, kCacheW);
  return w;
}

Tensor xray_model_input(const FloatImage& radiograph) { return xray_model_input(xray_working_image(radiograph)); }

namespace {

void zscore(float* data, std::size_t n) {
  double sum = 0, sq = 0;
  for (std::size_t i = 0; i < n; ++i) sum += data[i];
  const double mean = sum / n;
  for (std::size_t i = 0; i < n; ++i) sq += (data[i] - mean) * (data[i] - mean);
  const double sd = std::max(std::sqrt(sq / n), 1e-6);
  for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<float>((data[i] - mean) / sd);
}

}  // namespace

Tensor xray_vertebra_crops(const XrayWorkingImage& working, const std::vector<Point2>& centres,
                           const std::vector<double>& halves) {
  const int n = static_cast<int>(centres.size());
  const std::size_t per = static_cast<std::size_t>(kVertebraCrop) * kVertebraCrop;
  Tensor t({n, 1, kVertebraCrop, kVertebraCrop});
  for (int k = 0; k < n; ++k) {
    float* crop = t.data.data() + k * per;
    for (int i = 0; i < kVertebraCrop; ++i) {
      const double v = (i + 0.5) / kVertebraCrop * 2 - 1;
      for (int j = 0; j < kVertebraCrop; ++j) {
        const double u = (j + 0.5) / kVertebraCrop * 2 - 1;
        crop[static_cast<std::size_t>(i) * kVertebraCrop + j] = bilinear_zero_padded(
            working.pixels.data(), static_cast<int>(working.height), static_cast<int>(working.width),
            centres[k].x + halves[k] * u, centres[k].y + halves[k] * v);
      }
    }
    zscore(crop, per);
  }
  return t;
}

Tensor xray_model_input(const XrayWorkingImage& working) {
  const std::vector<float>& cache = working.pixels;
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

XrayLandmarks decode_xray_landmarks(const Tensor& out, std::size_t width, std::size_t height, int stride,
                                    double offset_scale, const XrayLandmarkOptions& opt) {
  if (out.shape.size() != 4 || out.shape[0] != 1 || out.shape[1] != kVertebrae + 8)
    throw model_error("landmark model output must be [1, 25, h, w]");
  const int h = static_cast<int>(out.shape[2]), w = static_cast<int>(out.shape[3]);
  const std::size_t plane = static_cast<std::size_t>(h) * w;
  XrayLandmarks res;
  const HeatmapPeaks hp = heatmap_peaks(out);
  const std::vector<Point2>& centres = hp.centres;
  for (int v = 0; v < kVertebrae; ++v) {
    const double rx = centres[v].x, ry = centres[v].y;
    res.confidence.push_back(std::clamp(hp.peaks[v], 0.0, 1.0));
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

XrayLandmarkDetector::XrayLandmarkDetector(const Model& model, const Model* refiner, XrayLandmarkOptions options)
    : model_(model), refiner_(refiner), options_(options) {
  const auto& out = model.card().raw.value("output", nlohmann::json::object());
  stride_ = out.value("stride", 4);
  offset_scale_ = out.value("offset_scale", 16.0);
  const auto& p = model.card().patch_size;
  if (p.size() != 2 || p[0] != kInputW || p[1] != kInputH)
    throw model_error(model.card().name + ": landmark model must take 256 x 512 inputs");
}

XrayLandmarks XrayLandmarkDetector::detect(const FloatImage& img) const {
  if (img.geometry.dimension != 2)
    throw input_error("is a 3D image (" + std::to_string(img.nz()) + " slices); spine-cobb needs a 2D radiograph");
  if (img.nx() < 64 || img.ny() < 128)
    throw input_error("image is too small (" + std::to_string(img.nx()) + " x " + std::to_string(img.ny()) +
                      " pixels; at least 64 x 128 needed)");
  if (img.voxels.size() > 100'000'000ULL)
    throw input_error("image is too large (" + std::to_string(img.nx()) + " x " + std::to_string(img.ny()) +
                      " pixels; at most 100 megapixels)");
  const auto r = intensity_range(img);
  if (!(r.max > r.min)) throw input_error("image is blank (constant intensity)");
  const XrayWorkingImage working = xray_working_image(img);
  const Tensor output = model_.forward(xray_model_input(working));
  XrayLandmarks result = decode_xray_landmarks(output, img.nx(), img.ny(), stride_, offset_scale_, options_);
  if (!refiner_) return result;

  // Second stage, twice: crops around the current centres (working-image pixels), corners
  // regressed in each crop's frame, centres updated from the corners.
  const double to_wx = double(kCacheW) / img.nx(), to_wy = double(kCacheH) / img.ny();
  // Heatmap-peak centres: output px -> input px -> working px is (c + 0.5) * stride * 2 - 0.5.
  std::vector<Point2> centres = heatmap_peaks(output).centres;
  for (auto& c : centres) c = {(c.x + 0.5) * stride_ * 2 - 0.5, (c.y + 0.5) * stride_ * 2 - 0.5};
  std::vector<Point2> corners(kCobbLandmarks);
  for (int iteration = 0; iteration < 2; ++iteration) {
    std::vector<double> halves(kVertebrae);
    for (int v = 0; v < kVertebrae; ++v) {
      auto dist = [&](int a, int b) { return std::hypot(centres[a].x - centres[b].x, centres[a].y - centres[b].y); };
      const double s = v == 0 ? dist(0, 1) : v == kVertebrae - 1 ? dist(v, v - 1) : (dist(v, v - 1) + dist(v, v + 1)) / 2;
      halves[v] = s * kRefineHalfFactor;
    }
    const Tensor uv = refiner_->forward(xray_vertebra_crops(working, centres, halves));
    if (uv.numel() != kVertebrae * 8) throw model_error(refiner_->card().name + ": output must be [17, 4, 2]");
    for (int v = 0; v < kVertebrae; ++v) {
      double mx = 0, my = 0;
      for (int c = 0; c < 4; ++c) {
        const Point2 p{centres[v].x + halves[v] * uv.data[v * 8 + 2 * c], centres[v].y + halves[v] * uv.data[v * 8 + 2 * c + 1]};
        corners[4 * v + c] = p;
        mx += p.x / 4, my += p.y / 4;
      }
      centres[v] = {mx, my};
    }
  }
  for (int k = 0; k < kCobbLandmarks; ++k) {
    result.points[k] = {(corners[k].x + 0.5) / to_wx - 0.5, (corners[k].y + 0.5) / to_wy - 0.5};
  }
  return result;
}

}  // namespace spine
