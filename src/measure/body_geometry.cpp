// Geometry of label-map structures in millimetres (see body_geometry.hpp).
#include "measure/body_geometry.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace spine::measure {

Vec3d add(const Vec3d& a, const Vec3d& b) { return {a[0] + b[0], a[1] + b[1], a[2] + b[2]}; }
Vec3d sub(const Vec3d& a, const Vec3d& b) { return {a[0] - b[0], a[1] - b[1], a[2] - b[2]}; }
Vec3d scale(const Vec3d& a, double s) { return {a[0] * s, a[1] * s, a[2] * s}; }
double dot(const Vec3d& a, const Vec3d& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
Vec3d cross(const Vec3d& a, const Vec3d& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}
double norm(const Vec3d& a) { return std::sqrt(dot(a, a)); }
Vec3d normalised(const Vec3d& a) {
  const double n = norm(a);
  return n > 0 ? scale(a, 1 / n) : Vec3d{0, 0, 1};
}
Vec3d orthogonalised(const Vec3d& v, const Vec3d& axis) { return normalised(sub(v, scale(axis, dot(v, axis)))); }

std::map<int, LabelBox> label_boxes(const LabelImage& labels) {
  std::map<int, LabelBox> boxes;
  const auto& n = labels.geometry.size;
  int last = 0;
  LabelBox* box = nullptr;
  for (std::size_t k = 0; k < n[2]; ++k)
    for (std::size_t j = 0; j < n[1]; ++j)
      for (std::size_t i = 0; i < n[0]; ++i) {
        const int v = labels.voxels[(k * n[1] + j) * n[0] + i];
        if (v == 0) continue;
        if (!box || v != last) {
          box = &boxes[v];
          last = v;
        }
        const std::array<std::size_t, 3> at{i, j, k};
        if (box->count++ == 0) box->lo = box->hi = at;
        for (int a = 0; a < 3; ++a) {
          box->lo[a] = std::min(box->lo[a], at[a]);
          box->hi[a] = std::max(box->hi[a], at[a]);
          box->index_sum[a] += double(at[a]);
        }
      }
  return boxes;
}

Vec3d box_centroid(const LabelBox& box, const Geometry& g) {
  const double n = std::max<double>(1, double(box.count));
  return g.index_to_lps(box.index_sum[0] / n, box.index_sum[1] / n, box.index_sum[2] / n);
}

bool touches_border(const LabelBox& box, const Geometry& g) {
  for (int a = 0; a < g.dimension; ++a)
    if (box.lo[a] == 0 || box.hi[a] + 1 >= g.size[a]) return true;
  return false;
}

Mask::Mask(const LabelImage& labels, const std::vector<int>& values, const std::map<int, LabelBox>& boxes, int margin) {
  const auto& g = labels.geometry;
  full_size_ = g.size;
  std::array<std::size_t, 3> lo{g.size[0], g.size[1], g.size[2]}, hi{0, 0, 0};
  for (int v : values) {
    const auto it = boxes.find(v);
    if (it == boxes.end() || it->second.count == 0) continue;
    count_ += it->second.count;
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::min(lo[a], it->second.lo[a]);
      hi[a] = std::max(hi[a], it->second.hi[a]);
    }
  }
  geometry_ = g;
  if (count_ == 0) {
    geometry_.size = {0, 0, 0};
    return;
  }
  auto wanted = [&](std::int16_t v) { return std::find(values.begin(), values.end(), v) != values.end(); };
  const int dims = g.dimension;
  for (int a = 0; a < 3; ++a) {
    const std::size_t m = a < dims ? static_cast<std::size_t>(margin) : 0;
    lo_[a] = lo[a] >= m ? lo[a] - m : 0;
    geometry_.size[a] = std::min(g.size[a] - 1, hi[a] + m) - lo_[a] + 1;
  }
  geometry_.origin = g.index_to_lps(double(lo_[0]), double(lo_[1]), double(lo_[2]));
  bits_.assign(geometry_.voxel_count(), 0);
  for (std::size_t k = 0; k < geometry_.size[2]; ++k)
    for (std::size_t j = 0; j < geometry_.size[1]; ++j)
      for (std::size_t i = 0; i < geometry_.size[0]; ++i)
        bits_[(k * geometry_.size[1] + j) * geometry_.size[0] + i] =
            wanted(labels.voxels[labels.offset(i + lo_[0], j + lo_[1], k + lo_[2])]);
}

double Mask::voxel_volume() const {
  return geometry_.spacing[0] * geometry_.spacing[1] * (geometry_.dimension == 3 ? geometry_.spacing[2] : 1.0);
}

bool Mask::touches_grid_edge() const {
  const std::size_t nx = geometry_.size[0], ny = geometry_.size[1];
  for (std::size_t c = 0; c < bits_.size(); ++c) {
    if (!bits_[c]) continue;
    const std::size_t at[3] = {c % nx, (c / nx) % ny, c / (nx * ny)};
    for (int a = 0; a < geometry_.dimension; ++a)
      if (at[a] + lo_[a] == 0 || at[a] + lo_[a] + 1 == full_size_[a]) return true;
  }
  return false;
}

std::size_t Mask::full_index(std::size_t c) const {
  const std::size_t nx = geometry_.size[0], ny = geometry_.size[1];
  const std::size_t i = c % nx, j = (c / nx) % ny, k = c / (nx * ny);
  return ((k + lo_[2]) * full_size_[1] + (j + lo_[1])) * full_size_[0] + (i + lo_[0]);
}

Vec3d Mask::point_of(std::size_t c) const {
  const std::size_t nx = geometry_.size[0], ny = geometry_.size[1];
  return geometry_.index_to_lps(double(c % nx), double((c / nx) % ny), double(c / (nx * ny)));
}

double Mask::sample(const Vec3d& p) const {
  if (bits_.empty()) return 0;
  const Vec3d x = geometry_.lps_to_index(p);
  const auto& n = geometry_.size;
  long i0[3];
  double f[3];
  for (int a = 0; a < 3; ++a) {
    const double fl = std::floor(x[a]);
    if (!std::isfinite(fl) || fl < -1 || fl > static_cast<double>(n[a])) return 0;
    i0[a] = static_cast<long>(fl);
    f[a] = x[a] - fl;
  }
  double v = 0;
  for (int dz = 0; dz < 2; ++dz)
    for (int dy = 0; dy < 2; ++dy)
      for (int dx = 0; dx < 2; ++dx) {
        const long i = i0[0] + dx, j = i0[1] + dy, k = i0[2] + dz;
        if (i < 0 || j < 0 || k < 0 || i >= long(n[0]) || j >= long(n[1]) || k >= long(n[2])) continue;
        if (!bits_[(std::size_t(k) * n[1] + std::size_t(j)) * n[0] + std::size_t(i)]) continue;
        v += (dx ? f[0] : 1 - f[0]) * (dy ? f[1] : 1 - f[1]) * (dz ? f[2] : 1 - f[2]);
      }
  return v;
}

Vec3d Mask::centroid() const {
  Vec3d s{0, 0, 0};
  for (std::size_t c = 0; c < bits_.size(); ++c)
    if (bits_[c]) s = add(s, point_of(c));
  return count_ ? scale(s, 1.0 / double(count_)) : s;
}

namespace {

// Felzenszwalb & Huttenlocher's 1D squared distance transform with sample spacing h:
// d(p) = min_q f(q) + (h (p - q))^2, in place over `f` (stride `stride`, n samples).
// "Inside" is a large finite value rather than infinity, which the parabola
// intersections cannot take.
constexpr double kFar = 1e12;

void edt_1d(double* f, std::size_t n, std::size_t stride, double h, std::vector<double>& d, std::vector<std::size_t>& v,
            std::vector<double>& z) {
  const double inf = std::numeric_limits<double>::infinity();
  d.resize(n);
  v.resize(n);
  z.resize(n + 1);
  const double h2 = h * h;
  auto F = [&](std::size_t q) { return f[q * stride]; };
  auto meet = [&](std::size_t r, std::size_t q) {
    return ((F(q) + h2 * double(q) * double(q)) - (F(r) + h2 * double(r) * double(r))) / (2 * h2 * (double(q) - double(r)));
  };
  std::size_t k = 0;
  v[0] = 0;
  z[0] = -inf;
  z[1] = inf;
  for (std::size_t q = 1; q < n; ++q) {
    double s = meet(v[k], q);
    while (s <= z[k]) {
      --k;
      s = meet(v[k], q);
    }
    ++k;
    v[k] = q;
    z[k] = s;
    z[k + 1] = inf;
  }
  k = 0;
  for (std::size_t q = 0; q < n; ++q) {
    while (z[k + 1] < double(q)) ++k;
    const double dq = h * (double(q) - double(v[k]));
    d[q] = dq * dq + F(v[k]);
  }
  for (std::size_t q = 0; q < n; ++q) f[q * stride] = d[q];
}

}  // namespace

std::vector<float> Mask::distance_inside() const {
  const auto& n = geometry_.size;
  std::vector<double> f(bits_.size());
  for (std::size_t c = 0; c < bits_.size(); ++c) f[c] = bits_[c] ? kFar : 0.0;
  std::vector<double> d, z;
  std::vector<std::size_t> v;
  const std::size_t stride[3] = {1, n[0], n[0] * n[1]};
  for (int a = 0; a < geometry_.dimension; ++a) {
    const std::size_t len = n[a];
    for (std::size_t c = 0; c < bits_.size(); ++c) {
      // Every line along axis a starts at a voxel whose coordinate on a is 0.
      if ((c / stride[a]) % len != 0) continue;
      // A line all outside stays all zero (most lines of a crop around a vertebra).
      bool any = false;
      for (std::size_t q = 0; q < len && !any; ++q) any = f[c + q * stride[a]] != 0.0;
      if (!any) continue;
      edt_1d(f.data() + c, len, stride[a], geometry_.spacing[a], d, v, z);
    }
  }
  std::vector<float> out(f.size());
  for (std::size_t c = 0; c < f.size(); ++c) out[c] = f[c] >= kFar ? 1e6f : static_cast<float>(std::sqrt(f[c]));
  return out;
}

Vec3d Mask::deepest_point(const std::optional<Vec3d>& front) const {
  const std::vector<float> dist = distance_inside();
  const Vec3d c = centroid();
  double lo = 1e300, hi = -1e300;
  if (front)
    for (std::size_t i = 0; i < bits_.size(); ++i)
      if (bits_[i]) {
        const double d = dot(point_of(i), *front);
        lo = std::min(lo, d);
        hi = std::max(hi, d);
      }
  const double limit = lo + 0.4 * (hi - lo);
  std::size_t best = 0;
  double best_d = -1, best_r = 0;
  for (std::size_t i = 0; i < dist.size(); ++i) {
    if (!bits_[i]) continue;
    if (front && dot(point_of(i), *front) > limit) continue;
    const double r = norm(sub(point_of(i), c));
    if (dist[i] > best_d + 1e-6 || (std::fabs(dist[i] - best_d) <= 1e-6 && r < best_r)) {
      best = i;
      best_d = dist[i];
      best_r = r;
    }
  }
  return point_of(best);
}

std::optional<double> exit_distance(const Mask& m, const Vec3d& from, const Vec3d& dir, double max_mm) {
  const double step = 0.2;
  double prev = m.sample(from);
  if (prev < 0.5) return std::nullopt;
  for (double t = step; t <= max_mm; t += step) {
    const double v = m.sample(add(from, scale(dir, t)));
    if (v < 0.5) return t - step + step * (prev - 0.5) / (prev - v);
    prev = v;
  }
  return std::nullopt;
}

std::optional<PlaneFit> fit_plane(const std::vector<Vec3d>& pts, const Vec3d& outward) {
  if (pts.size() < 6) return std::nullopt;
  Vec3d c{0, 0, 0};
  for (const auto& p : pts) c = add(c, p);
  c = scale(c, 1.0 / double(pts.size()));
  // The normal is the eigenvector of the scatter matrix with the smallest eigenvalue: by
  // inverse iteration from the expected direction (the scatter is positive semi-definite
  // and the surface patch is wide, so one eigenvalue is much smaller than the others).
  double s[3][3] = {};
  for (const auto& p : pts) {
    const Vec3d q = sub(p, c);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) s[i][j] += q[i] * q[j];
  }
  const double tr = s[0][0] + s[1][1] + s[2][2];
  for (int i = 0; i < 3; ++i) s[i][i] += 1e-9 * tr + 1e-12;
  auto solve = [&](const Vec3d& b) {  // Cramer's rule on the 3x3 system s x = b
    const double det = s[0][0] * (s[1][1] * s[2][2] - s[1][2] * s[2][1]) - s[0][1] * (s[1][0] * s[2][2] - s[1][2] * s[2][0]) +
                       s[0][2] * (s[1][0] * s[2][1] - s[1][1] * s[2][0]);
    Vec3d x{0, 0, 0};
    for (int col = 0; col < 3; ++col) {
      double m[3][3];
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) m[i][j] = j == col ? b[i] : s[i][j];
      x[col] = (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
                m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])) /
               det;
    }
    return x;
  };
  Vec3d n = normalised(outward);
  for (int it = 0; it < 30; ++it) n = normalised(solve(n));
  if (dot(n, outward) < 0) n = scale(n, -1);
  double ss = 0;
  for (const auto& p : pts) ss += std::pow(dot(sub(p, c), n), 2);
  return PlaneFit{c, n, static_cast<int>(pts.size()), std::sqrt(ss / double(pts.size()))};
}

namespace {

// The surface points above and below the central plane on a grid of columns along
// `axial`, within the central part of the section (clear of the rims).
void surface_points(const Mask& m, const BodyFrame& f, std::vector<Vec3d>& up, std::vector<Vec3d>& down) {
  up.clear();
  down.clear();
  const double u_max = 0.6 * f.half_width_mm;
  const double v_lo = -f.anterior_mm + 0.2 * (f.anterior_mm + f.posterior_mm);
  const double v_hi = f.posterior_mm - 0.2 * (f.anterior_mm + f.posterior_mm);
  for (double u = -u_max; u <= u_max + 1e-9; u += 1.0)
    for (double v = v_lo; v <= v_hi + 1e-9; v += 1.0) {
      const Vec3d at = add(f.centre, add(scale(f.lateral, u), scale(f.posterior, v)));
      const auto t_up = exit_distance(m, at, f.axial), t_down = exit_distance(m, at, scale(f.axial, -1));
      if (!t_up || !t_down) continue;
      up.push_back(add(at, scale(f.axial, *t_up)));
      down.push_back(add(at, scale(f.axial, -*t_down)));
    }
}

void set_extents(const Mask& m, BodyFrame& f) {
  f.lateral = normalised(cross(f.posterior, f.axial));
  f.anterior_mm = exit_distance(m, f.centre, scale(f.posterior, -1)).value_or(0);
  f.posterior_mm = exit_distance(m, f.centre, f.posterior).value_or(0);
  const double left = exit_distance(m, f.centre, f.lateral).value_or(0);
  const double right = exit_distance(m, f.centre, scale(f.lateral, -1)).value_or(0);
  f.half_width_mm = std::min(left, right);
}

}  // namespace

std::optional<BodyFrame> body_frame(const Mask& body, Vec3d axial_guess) {
  if (body.count() < 20) return std::nullopt;
  BodyFrame f;
  f.centre = body.centroid();
  if (!body.inside(f.centre)) f.centre = body.deepest_point();
  f.axial = normalised(axial_guess);
  // Posterior: the patient's back (LPS +y) in the plane of the body's section.
  f.posterior = orthogonalised({0, 1, 0}, f.axial);
  set_extents(body, f);
  std::vector<Vec3d> up, down;
  for (int it = 0; it < 3; ++it) {
    surface_points(body, f, up, down);
    f.upper = fit_plane(up, f.axial);
    f.lower = fit_plane(down, scale(f.axial, -1));
    if (!f.upper || !f.lower) return std::nullopt;
    if (it == 2) break;
    f.axial = normalised(sub(f.upper->normal, f.lower->normal));
    f.posterior = orthogonalised(f.posterior, f.axial);
    // Re-centre half-way between the two endplates along the new axis.
    const Vec3d mid = scale(add(f.upper->centre, f.lower->centre), 0.5);
    if (body.inside(mid)) f.centre = mid;
    set_extents(body, f);
  }
  return f;
}

Heights heights_in_frame(const Mask& body, const BodyFrame& f) {
  Heights h;
  const double depth = f.anterior_mm + f.posterior_mm;
  const double fractions[3] = {kAnteriorFraction, kMiddleFraction, kPosteriorFraction};
  double* out[3] = {&h.anterior, &h.middle, &h.posterior};
  h.valid = depth > 2;
  // A patch of lines (7 laterally x 5 along the depth, 1 mm and 0.75 mm apart) around
  // each position: where the endplates are oblique to the voxel grid their boundaries
  // fall at different phases of it, so the trimmed mean of the patch is sub-voxel.
  for (int q = 0; q < 3 && h.valid; ++q) {
    const double v0 = -f.anterior_mm + fractions[q] * depth;
    std::vector<double> lengths, ups, downs;
    for (double u = -3; u <= 3 + 1e-9; u += 1)
      for (double dv = -1.5; dv <= 1.5 + 1e-9; dv += 0.75) {
        const Vec3d at = add(f.centre, add(scale(f.lateral, u), scale(f.posterior, v0 + dv)));
        const auto t_up = exit_distance(body, at, f.axial), t_down = exit_distance(body, at, scale(f.axial, -1));
        if (!t_up || !t_down) continue;
        lengths.push_back(*t_up + *t_down);
        ups.push_back(*t_up);
        downs.push_back(*t_down);
      }
    if (lengths.size() < 12) {
      h.valid = false;
      break;
    }
    auto trimmed_mean = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      const std::size_t cut = v.size() / 5;
      double s = 0;
      for (std::size_t i = cut; i + cut < v.size(); ++i) s += v[i];
      return s / double(v.size() - 2 * cut);
    };
    *out[q] = trimmed_mean(lengths);
    const Vec3d at = add(f.centre, scale(f.posterior, v0));
    h.points[static_cast<std::size_t>(q)] = add(at, scale(f.axial, trimmed_mean(ups)));
    h.points[static_cast<std::size_t>(q + 3)] = add(at, scale(f.axial, -trimmed_mean(downs)));
  }
  return h;
}

double sagittal_tilt_deg(const Vec3d& n) { return std::atan2(n[1], n[2]) * 180 / M_PI; }
double coronal_tilt_deg(const Vec3d& n) { return std::atan2(n[0], n[2]) * 180 / M_PI; }

}  // namespace spine::measure
