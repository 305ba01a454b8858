// Vertebra instances: components of the vertebra class, split where one is longer than a
// vertebra, merged where pieces lie side by side, and filtered to the spinal column.
#include "inference/instances.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <map>

#include "spine/log.hpp"

namespace spine {

std::vector<int> connected_components(const std::vector<std::uint8_t>& mask, std::int64_t nx, std::int64_t ny,
                                      std::int64_t nz, int& count) {
  std::vector<int> comp(mask.size(), 0);
  count = 0;
  std::vector<std::size_t> stack;
  for (std::size_t start = 0; start < mask.size(); ++start) {
    if (!mask[start] || comp[start]) continue;
    ++count;
    comp[start] = count;
    stack.assign(1, start);
    while (!stack.empty()) {
      const std::size_t v = stack.back();
      stack.pop_back();
      const std::int64_t x = static_cast<std::int64_t>(v % nx), y = static_cast<std::int64_t>((v / nx) % ny),
                         z = static_cast<std::int64_t>(v / (nx * ny));
      const std::int64_t nb[6][3] = {{x - 1, y, z}, {x + 1, y, z}, {x, y - 1, z}, {x, y + 1, z}, {x, y, z - 1}, {x, y, z + 1}};
      for (const auto& q : nb) {
        if (q[0] < 0 || q[1] < 0 || q[2] < 0 || q[0] >= nx || q[1] >= ny || q[2] >= nz) continue;
        const std::size_t w = static_cast<std::size_t>((q[2] * ny + q[1]) * nx + q[0]);
        if (mask[w] && !comp[w]) {
          comp[w] = count;
          stack.push_back(w);
        }
      }
    }
  }
  return comp;
}

namespace {

// Whether every value is a whole number in [0, limit): voxel indices, as the callers pass.
bool small_whole_numbers(const std::vector<std::vector<double>>& rows, double limit) {
  for (const auto& r : rows)
    for (double v : r)
      if (!(v >= 0 && v < limit) || v != std::floor(v)) return false;
  return true;
}

// For each row r, the median (the element at n/2 of the sorted values, as
// ColumnModel::median) of the rows within +-w of it, from a sliding histogram: each value
// enters and leaves the window once, instead of every window being gathered and
// partitioned anew (a CT's vertebra voxels are about a million points).
std::vector<double> sliding_medians(const std::vector<std::vector<double>>& rows, std::ptrdiff_t w, std::size_t bins) {
  const auto n_rows = static_cast<std::ptrdiff_t>(rows.size());
  std::vector<std::size_t> count(bins, 0);
  std::size_t total = 0;
  auto enter = [&](std::ptrdiff_t q) {
    if (q < 0 || q >= n_rows) return;
    for (double v : rows[static_cast<std::size_t>(q)]) ++count[static_cast<std::size_t>(v)];
    total += rows[static_cast<std::size_t>(q)].size();
  };
  auto leave = [&](std::ptrdiff_t q) {
    if (q < 0 || q >= n_rows) return;
    for (double v : rows[static_cast<std::size_t>(q)]) --count[static_cast<std::size_t>(v)];
    total -= rows[static_cast<std::size_t>(q)].size();
  };
  for (std::ptrdiff_t q = 0; q < std::min(w, n_rows); ++q) enter(q);
  std::vector<double> out(rows.size(), 0);
  for (std::ptrdiff_t r = 0; r < n_rows; ++r) {
    enter(r + w);
    leave(r - w - 1);
    if (total == 0) continue;
    const std::size_t rank = total / 2;
    std::size_t seen = 0, b = 0;
    while (seen + count[b] <= rank) seen += count[b++];
    out[static_cast<std::size_t>(r)] = static_cast<double>(b);
  }
  return out;
}

}  // namespace

ColumnModel::ColumnModel(const std::vector<std::array<double, 3>>& points, double spacing_mm, double half_window_mm)
  : spacing_(spacing_mm) {
  if (points.empty()) return;
  x0_ = 1e30;
  double x1 = -1e30;
  for (const auto& p : points) x0_ = std::min(x0_, p[0]), x1 = std::max(x1, p[0]);
  const auto rows = static_cast<std::size_t>(x1 - x0_) + 1;
  std::vector<std::vector<double>> ys(rows), zs(rows);
  for (const auto& p : points) {
    ys[static_cast<std::size_t>(p[0] - x0_)].push_back(p[1]);
    zs[static_cast<std::size_t>(p[0] - x0_)].push_back(p[2]);
  }
  const auto w = static_cast<std::ptrdiff_t>(std::ceil(half_window_mm / spacing_mm));
  constexpr double kHistogramLimit = 1 << 16;
  if (small_whole_numbers(ys, kHistogramLimit) && small_whole_numbers(zs, kHistogramLimit)) {
    double top = 0;
    for (const auto& p : points) top = std::max({top, p[1], p[2]});
    const auto bins = static_cast<std::size_t>(top) + 1;
    median_y_ = sliding_medians(ys, w, bins);
    median_z_ = sliding_medians(zs, w, bins);
  } else {
    median_y_.assign(rows, 0), median_z_.assign(rows, 0);
    std::vector<double> wy, wz;
    for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(rows); ++r) {
      wy.clear(), wz.clear();
      for (std::ptrdiff_t q = std::max<std::ptrdiff_t>(0, r - w); q <= std::min<std::ptrdiff_t>(rows - 1, r + w); ++q) {
        wy.insert(wy.end(), ys[q].begin(), ys[q].end());
        wz.insert(wz.end(), zs[q].begin(), zs[q].end());
      }
      median_y_[r] = median(wy), median_z_[r] = median(wz);
    }
  }
  // The lateral extent over the rows with points within the window.
  std::vector<std::size_t> prefix(rows + 1, 0);
  for (std::size_t r = 0; r < rows; ++r) prefix[r + 1] = prefix[r] + zs[r].size();
  for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(rows); ++r) {
    const auto lo = static_cast<std::size_t>(std::max<std::ptrdiff_t>(0, r - w));
    const auto hi = static_cast<std::size_t>(std::min<std::ptrdiff_t>(rows - 1, r + w)) + 1;
    if (prefix[hi] == prefix[lo]) continue;
    const bool first = lateral_extent_.first > lateral_extent_.second;
    lateral_extent_.first = first ? median_z_[r] : std::min(lateral_extent_.first, median_z_[r]);
    lateral_extent_.second = first ? median_z_[r] : std::max(lateral_extent_.second, median_z_[r]);
  }
}
bool ColumnModel::near(const std::array<double, 3>& p, double lateral_mm, double ap_mm) const {
  if (median_y_.empty()) return false;
  const auto r = static_cast<std::size_t>(std::clamp(p[0] - x0_, 0.0, static_cast<double>(median_y_.size() - 1)));
  return std::abs(p[2] - median_z_[r]) * spacing_ <= lateral_mm && std::abs(p[1] - median_y_[r]) * spacing_ <= ap_mm;
}
double ColumnModel::median(std::vector<double>& v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

std::vector<std::vector<std::size_t>> component_members(const std::vector<std::uint8_t>& mask, std::int64_t nx,
                                                        std::int64_t ny, std::int64_t nz) {
  int count = 0;
  const std::vector<int> comp = connected_components(mask, nx, ny, nz, count);
  std::vector<std::vector<std::size_t>> members(static_cast<std::size_t>(count));
  for (std::size_t i = 0; i < comp.size(); ++i)
    if (comp[i]) members[static_cast<std::size_t>(comp[i] - 1)].push_back(i);
  return members;
}

Instance make_instance(std::vector<std::size_t> voxels, std::int64_t nx, std::int64_t ny, std::int64_t nz) {
  Instance in;
  in.x_min = std::numeric_limits<std::int64_t>::max();
  in.x_max = std::numeric_limits<std::int64_t>::min();
  for (std::size_t v : voxels) {
    const std::int64_t x = static_cast<std::int64_t>(v % nx), y = static_cast<std::int64_t>((v / nx) % ny),
                       z = static_cast<std::int64_t>(v / (nx * ny));
    in.cx += x, in.cy += y, in.cz += z;
    in.x_min = std::min(in.x_min, x), in.x_max = std::max(in.x_max, x);
    if (x == 0 || y == 0 || x == nx - 1 || y == ny - 1 || z == 0 || z == nz - 1) in.touches_border = true;
  }
  const double n = static_cast<double>(std::max<std::size_t>(1, voxels.size()));
  in.cx /= n, in.cy /= n, in.cz /= n;
  in.voxels = std::move(voxels);
  return in;
}

void merge_side_by_side(std::vector<Instance>& instances, double spacing_mm, double max_centroid_mm,
                        double max_extent_mm, std::int64_t nx, std::int64_t ny, std::int64_t nz) {
  for (bool merged = true; merged;) {
    merged = false;
    for (std::size_t i = 0; i < instances.size() && !merged; ++i)
      for (std::size_t j = i + 1; j < instances.size() && !merged; ++j) {
        const Instance &a = instances[i], &b = instances[j];
        const double extent = (std::max(a.x_max, b.x_max) - std::min(a.x_min, b.x_min) + 1) * spacing_mm;
        if (std::abs(a.cx - b.cx) * spacing_mm > max_centroid_mm || extent > max_extent_mm) continue;
        std::vector<std::size_t> voxels = a.voxels;
        voxels.insert(voxels.end(), b.voxels.begin(), b.voxels.end());
        instances[i] = make_instance(std::move(voxels), nx, ny, nz);
        instances.erase(instances.begin() + static_cast<std::ptrdiff_t>(j));
        merged = true;
      }
  }
}

namespace {

// The box around a candidate's voxels. The per-candidate buffers below cover it, not the
// whole region: a CT's region holds about 9 million voxels, a vertebra's box a few hundred
// thousand, and the splits run per candidate (the level-vote split once per level). Box
// offsets keep the region's order (z, then y, then x), so components found in the box
// come out in the order, and with the voxels in the order, the whole region gives.
struct VoxelBox {
  std::int64_t nx = 0, ny = 0;                // the region's
  std::int64_t x0 = 0, y0 = 0, z0 = 0;        // the box's first voxel
  std::int64_t bx = 0, by = 0, bz = 0;        // the box's size

  VoxelBox(const std::vector<std::size_t>& voxels, std::int64_t region_nx, std::int64_t region_ny,
           std::int64_t region_nz)
    : nx(region_nx), ny(region_ny) {
    std::int64_t x1 = -1, y1 = -1, z1 = -1;
    x0 = region_nx, y0 = region_ny, z0 = region_nz;
    for (std::size_t v : voxels) {
      const auto x = static_cast<std::int64_t>(v % nx), y = static_cast<std::int64_t>((v / nx) % ny),
                 z = static_cast<std::int64_t>(v / (nx * ny));
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
      z0 = std::min(z0, z), z1 = std::max(z1, z);
    }
    if (voxels.empty()) x0 = y0 = z0 = 0;
    bx = x1 - x0 + 1, by = y1 - y0 + 1, bz = z1 - z0 + 1;
  }
  std::size_t size() const { return static_cast<std::size_t>(bx * by * bz); }
  std::size_t local(std::size_t v) const {
    const auto x = static_cast<std::int64_t>(v % nx), y = static_cast<std::int64_t>((v / nx) % ny),
               z = static_cast<std::int64_t>(v / (nx * ny));
    return static_cast<std::size_t>(((z - z0) * by + (y - y0)) * bx + (x - x0));
  }
  std::size_t global(std::size_t l) const {
    const auto x = static_cast<std::int64_t>(l) % bx, y = (static_cast<std::int64_t>(l) / bx) % by,
               z = static_cast<std::int64_t>(l) / (bx * by);
    return static_cast<std::size_t>(((z + z0) * ny + (y + y0)) * nx + (x + x0));
  }
  // A mask of the box with the given voxels set.
  std::vector<std::uint8_t> mask(const std::vector<std::size_t>& voxels) const {
    std::vector<std::uint8_t> m(size(), 0);
    for (std::size_t v : voxels) m[local(v)] = 1;
    return m;
  }
  // Components of a mask of the box, as voxels of the region.
  std::vector<std::vector<std::size_t>> components(const std::vector<std::uint8_t>& m) const {
    auto members = component_members(m, bx, by, bz);
    for (auto& c : members)
      for (std::size_t& v : c) v = global(v);
    return members;
  }
};

// Calls visit(w) for each of voxel v's 6 face neighbours w inside the box.
template <class Visit>
void for_each_face_neighbour(std::size_t v, std::int64_t nx, std::int64_t ny, std::int64_t nz, Visit&& visit) {
  const std::int64_t x = static_cast<std::int64_t>(v % nx), y = static_cast<std::int64_t>((v / nx) % ny),
                     z = static_cast<std::int64_t>(v / (nx * ny));
  const std::int64_t nb[6][3] = {{x - 1, y, z}, {x + 1, y, z}, {x, y - 1, z}, {x, y + 1, z}, {x, y, z - 1}, {x, y, z + 1}};
  for (const auto& q : nb)
    if (q[0] >= 0 && q[1] >= 0 && q[2] >= 0 && q[0] < nx && q[1] < ny && q[2] < nz)
      visit(static_cast<std::size_t>((q[2] * ny + q[1]) * nx + q[0]));
}

// Each seed's label taken to the voxels of `inside` nearest to it (6-neighbour
// breadth-first growth); owner[v] is the label of voxel v, -1 where no seed reached.
void grow_from_seeds(std::vector<int>& owner, std::vector<std::size_t> frontier, const std::vector<std::uint8_t>& inside,
                     std::int64_t nx, std::int64_t ny, std::int64_t nz) {
  std::vector<std::size_t> grown;
  while (!frontier.empty()) {
    grown.clear();
    for (std::size_t v : frontier)
      for_each_face_neighbour(v, nx, ny, nz, [&](std::size_t w) {
        if (inside[w] && owner[w] < 0) owner[w] = owner[v], grown.push_back(w);
      });
    frontier.swap(grown);
  }
}

}  // namespace

std::vector<std::vector<std::size_t>> split_at_thin_joins(const std::vector<std::size_t>& voxels, std::int64_t nx,
                                                          std::int64_t ny, std::int64_t nz, int max_radius,
                                                          double max_extent_vox) {
  if (voxels.empty()) return {};
  const VoxelBox box(voxels, nx, ny, nz);
  const std::size_t n = box.size();
  const std::vector<std::uint8_t> inside = box.mask(voxels);
  std::vector<std::size_t> local(voxels.size());
  for (std::size_t i = 0; i < voxels.size(); ++i) local[i] = box.local(voxels[i]);
  std::vector<std::uint8_t> core = inside, next;
  // Outside the box is outside the component: n stands for it.
  const auto neighbours = [&](std::size_t v, auto&& visit) {
    const std::int64_t x = static_cast<std::int64_t>(v) % box.bx, y = (static_cast<std::int64_t>(v) / box.bx) % box.by,
                       z = static_cast<std::int64_t>(v) / (box.bx * box.by);
    const std::int64_t nb[6][3] = {{x - 1, y, z}, {x + 1, y, z}, {x, y - 1, z}, {x, y + 1, z}, {x, y, z - 1}, {x, y, z + 1}};
    for (const auto& q : nb) {
      const bool out = q[0] < 0 || q[1] < 0 || q[2] < 0 || q[0] >= box.bx || q[1] >= box.by || q[2] >= box.bz;
      visit(out ? n : static_cast<std::size_t>((q[2] * box.by + q[1]) * box.bx + q[0]));
    }
  };
  // The smallest erosion that leaves two or more cores, each vertebra-sized once grown
  // back by the radius: a bridge is cut before a vertebra's own thinner parts, and bodies
  // (20 mm and more) keep a core. When no radius gets there (vertebrae joined through a
  // disc taken for bone), the radius that leaves the most cores.
  std::vector<std::vector<std::size_t>> cores, most;  // box offsets
  for (int r = 1; r <= max_radius; ++r) {
    next = core;
    for (std::size_t v : local) {
      if (!core[v]) continue;
      neighbours(v, [&](std::size_t w) {
        if (w == n || !core[w]) next[v] = 0;
      });
    }
    core.swap(next);
    if (r < 2) continue;
    cores = component_members(core, box.bx, box.by, box.bz);
    std::size_t largest = 0;
    for (const auto& c : cores) largest = std::max(largest, c.size());
    // Pieces of one vertebra's arch (a spinous process cut off at its lamina) are small
    // next to a vertebra's core: they are taken back by the growth, not made seeds.
    cores.erase(std::remove_if(cores.begin(), cores.end(), [&](const auto& c) { return c.size() * 4 < largest; }),
                cores.end());
    bool vertebra_sized = cores.size() >= 2;
    for (const auto& c : cores) {
      std::int64_t lo = box.bx, hi = -1;
      for (std::size_t v : c)
        lo = std::min<std::int64_t>(lo, static_cast<std::int64_t>(v) % box.bx),
        hi = std::max<std::int64_t>(hi, static_cast<std::int64_t>(v) % box.bx);
      vertebra_sized = vertebra_sized && static_cast<double>(hi - lo + 1 + 2 * r) <= max_extent_vox;
    }
    if (vertebra_sized) break;
    if (cores.size() > most.size()) most = cores;
    cores.clear();
  }
  if (cores.empty()) cores.swap(most);
  if (cores.size() < 2) return {};
  // Each core takes back the voxels nearest to it inside the component (breadth first).
  std::vector<int> owner(n, -1);
  std::vector<std::size_t> frontier;
  for (std::size_t k = 0; k < cores.size(); ++k)
    for (std::size_t v : cores[k]) owner[v] = static_cast<int>(k), frontier.push_back(v);
  grow_from_seeds(owner, std::move(frontier), inside, box.bx, box.by, box.bz);
  std::vector<std::vector<std::size_t>> parts(cores.size());
  for (std::size_t i = 0; i < voxels.size(); ++i)
    if (owner[local[i]] >= 0) parts[static_cast<std::size_t>(owner[local[i]])].push_back(voxels[i]);
  return parts;
}

std::vector<DiscColumns> disc_columns(const std::vector<std::vector<std::size_t>>& discs, std::int64_t nx,
                                      std::int64_t ny) {
  std::vector<DiscColumns> out;
  for (const auto& disc : discs) {
    std::map<std::int64_t, std::pair<std::int64_t, std::int64_t>> columns;
    double cx = 0;
    for (std::size_t v : disc) {
      const auto x = static_cast<std::int64_t>(v % nx);
      const auto [it, fresh] = columns.try_emplace(static_cast<std::int64_t>(v / nx), x, x);
      if (!fresh) it->second.first = std::min(it->second.first, x), it->second.second = std::max(it->second.second, x);
      cx += static_cast<double>(x);
    }
    double cy = 0;
    for (const auto& entry : columns) cy += static_cast<double>(entry.first % ny);
    out.push_back({cx / static_cast<double>(std::max<std::size_t>(1, disc.size())),
                   cy / static_cast<double>(std::max<std::size_t>(1, columns.size())),
                   {columns.begin(), columns.end()}});
  }
  return out;
}

std::vector<std::vector<std::size_t>> split_at_discs(const std::vector<std::size_t>& voxels,
                                                     const std::vector<DiscColumns>& discs, std::int64_t nx,
                                                     std::int64_t ny, std::int64_t nz, int seed_depth,
                                                     std::size_t min_seed_voxels, double same_disc_vox,
                                                     double max_behind_vox) {
  if (discs.empty() || voxels.empty()) return {};
  double centre_y = 0;  // the voxels' centre of mass front to back
  for (std::size_t v : voxels)
    centre_y += static_cast<double>((v / static_cast<std::size_t>(nx)) % static_cast<std::size_t>(ny));
  centre_y /= static_cast<double>(voxels.size());
  const VoxelBox box(voxels, nx, ny, nz);
  const std::int64_t x0 = box.x0, y0 = box.y0, z0 = box.z0, bx = box.bx, by = box.by, bz = box.bz;
  const std::int64_t x1 = x0 + bx - 1, y1 = y0 + by - 1, z1 = z0 + bz - 1;
  const std::size_t n = box.size();
  const std::vector<std::uint8_t> inside = box.mask(voxels);
  struct Cut {
    double x;  // the disc's centroid head to foot
    std::vector<std::size_t> above, below;  // seeds, box offsets
    std::vector<std::int64_t> columns;      // z * ny + y of the disc's columns, sorted
  };
  std::vector<Cut> cuts;
  for (const auto& disc : discs) {
    Cut cut{disc.x, {}, {}, {}};
    for (const auto& [column, extent] : disc.columns) {
      const std::int64_t y = column % ny, z = column / ny;
      if (y < y0 || y > y1 || z < z0 || z > z1) continue;
      const auto row = static_cast<std::size_t>(((z - z0) * by + (y - y0)) * bx);
      for (int d = 1; d <= seed_depth; ++d) {
        const std::int64_t up = extent.first - d, down = extent.second + d;
        if (up >= x0 && up <= x1 && inside[row + static_cast<std::size_t>(up - x0)])
          cut.above.push_back(row + static_cast<std::size_t>(up - x0));
        if (down >= x0 && down <= x1 && inside[row + static_cast<std::size_t>(down - x0)])
          cut.below.push_back(row + static_cast<std::size_t>(down - x0));
      }
    }
    if (cut.above.size() < min_seed_voxels || cut.below.size() < min_seed_voxels) continue;
    // A disc lies in front of the canal. Between bone above and below it, far behind the
    // vertebra's centre of mass (near the back of its body), lies a facet joint: on the
    // real abdominal CT the L2/L3 joint space, taken for disc 36 mm behind L3's centre,
    // cut the upper third of L3's body off to L2.
    if (disc.y > centre_y + max_behind_vox) continue;
    for (const auto& entry : disc.columns) cut.columns.push_back(entry.first);
    cuts.push_back(std::move(cut));
  }
  if (cuts.empty()) return {};
  std::sort(cuts.begin(), cuts.end(), [](const Cut& a, const Cut& b) { return a.x < b.x; });
  // Pieces of one disc (split where the model was unsure) are one cut. Discs one above
  // the other cover much the same columns; pieces of one disc lie side by side, in columns
  // of their own, and within a vertebra's height (a tilted L5/S1 disc's front and back
  // pieces came out 14 mm apart head to foot).
  const auto same_disc = [&](const Cut& a, const Cut& b) {
    if (b.x - a.x >= same_disc_vox) return false;
    std::vector<std::int64_t> common;
    std::set_intersection(a.columns.begin(), a.columns.end(), b.columns.begin(), b.columns.end(),
                          std::back_inserter(common));
    return static_cast<double>(common.size()) < 0.2 * static_cast<double>(std::min(a.columns.size(), b.columns.size()));
  };
  std::vector<Cut> merged;
  for (auto& c : cuts) {
    if (!merged.empty() && same_disc(merged.back(), c)) {
      merged.back().above.insert(merged.back().above.end(), c.above.begin(), c.above.end());
      merged.back().below.insert(merged.back().below.end(), c.below.begin(), c.below.end());
      merged.back().columns.insert(merged.back().columns.end(), c.columns.begin(), c.columns.end());
      std::sort(merged.back().columns.begin(), merged.back().columns.end());
      continue;
    }
    merged.push_back(std::move(c));
  }
  cuts.swap(merged);
  std::vector<std::uint8_t> body_column(static_cast<std::size_t>(by * bz), 0);
  for (const auto& c : cuts)
    for (std::int64_t column : c.columns) {
      const std::int64_t y = column % ny, z = column / ny;
      if (y >= y0 && y <= y1 && z >= z0 && z <= z1) body_column[static_cast<std::size_t>((z - z0) * by + (y - y0))] = 1;
    }
  // Above disc k lies vertebra k, below it vertebra k + 1.
  std::vector<int> owner(n, -1);
  std::vector<std::size_t> frontier;
  for (std::size_t k = 0; k < cuts.size(); ++k)
    for (const auto& [seeds, label] : {std::pair{&cuts[k].above, k}, std::pair{&cuts[k].below, k + 1}})
      for (std::size_t v : *seeds)
        if (owner[v] < 0) owner[v] = static_cast<int>(label), frontier.push_back(v);
  // First within the discs' columns, where the bodies are: each body is taken whole from
  // its endplates. Then from the whole bodies into the rest: an arch joins its own body
  // through the pedicles, sooner than it meets the neighbour's body through a facet joint.
  std::vector<std::uint8_t> in_body(n, 0);
  for (std::size_t i = 0; i < n; ++i) in_body[i] = inside[i] && body_column[i / static_cast<std::size_t>(bx)];
  grow_from_seeds(owner, frontier, in_body, bx, by, bz);
  frontier.clear();
  for (std::size_t v : voxels)
    if (owner[box.local(v)] >= 0) frontier.push_back(box.local(v));
  grow_from_seeds(owner, std::move(frontier), inside, bx, by, bz);
  std::vector<std::vector<std::size_t>> parts(cuts.size() + 1);
  for (std::size_t v : voxels)
    if (owner[box.local(v)] >= 0) parts[static_cast<std::size_t>(owner[box.local(v)])].push_back(v);
  return parts;
}

namespace {

// A piece cut off at a disc with fewer faces than this against another candidate
// touches none (a corner, not a shared surface).
constexpr std::size_t kMinContactVoxels = 20;

// Candidates still joined across a disc (a partly visible neighbour, the sacrum below
// L5: not longer than one vertebra, so left whole by the rules before) cut at the disc
// (split_at_discs). This comes after those rules, not instead of them: where they
// separate vertebrae, their borders through the arches are better than growth from the
// endplates. Of a candidate's parts, the largest stays it; another part that touches a
// second candidate joins that one (the level votes drew the border off the disc), one
// that touches none is a vertebra of its own.
void cut_at_discs(std::vector<Instance>& instances, const std::vector<DiscColumns>& discs, std::int64_t nx,
                  std::int64_t ny, std::int64_t nz, const InstanceRules& rules) {
  if (discs.empty()) return;
  const double voxel_ml = rules.spacing_mm * rules.spacing_mm * rules.spacing_mm / 1000.0;
  // Seeds 4 mm deep on either side of a disc; a side needs at least 0.1 ml of them (a
  // fifth of a thoracic endplate's area, 4 mm deep): less is a stray voxel, not a body.
  const int seed_depth = std::max(1, static_cast<int>(std::lround(4.0 / rules.spacing_mm)));
  const auto min_seed_voxels = static_cast<std::size_t>(std::ceil(0.1 / voxel_ml));
  // Disc pieces in columns of their own are one disc when their centres lie within 25 mm
  // head to foot (a thoracic or lumbar vertebra and its disc are taller).
  const double same_disc_vox = 25.0 / rules.spacing_mm;
  // A whole vertebra's centre of mass lies near the back of its body (the body is most of
  // its volume): a disc, even a piece at its back, lies in front of it or a few mm behind
  // (7 mm at most on the real CTs); the facet joints lie behind the canal, 25 mm and more
  // behind the body's back wall.
  const double max_behind_vox = 20.0 / rules.spacing_mm;
  std::vector<int> owner(static_cast<std::size_t>(nx * ny * nz), -1);
  for (std::size_t i = 0; i < instances.size(); ++i)
    for (std::size_t v : instances[i].voxels) owner[v] = static_cast<int>(i);
  std::vector<std::vector<std::size_t>> keep(instances.size()), loose;
  for (std::size_t i = 0; i < instances.size(); ++i) {
    auto parts = split_at_discs(instances[i].voxels, discs, nx, ny, nz, seed_depth, min_seed_voxels, same_disc_vox,
                                max_behind_vox);
    if (parts.empty()) {  // (pieces of others may have joined it already)
      keep[i].insert(keep[i].end(), instances[i].voxels.begin(), instances[i].voxels.end());
      continue;
    }
    std::sort(parts.begin(), parts.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
    log::debug("vertebra candidate of {:.1f} ml at {:.0f} cut at {} discs", instances[i].voxels.size() * voxel_ml,
               instances[i].cx, parts.size() - 1);
    keep[i].insert(keep[i].end(), parts[0].begin(), parts[0].end());
    for (std::size_t k = 1; k < parts.size(); ++k) {
      std::map<int, std::size_t> contacts;
      for (std::size_t v : parts[k])
        for_each_face_neighbour(v, nx, ny, nz, [&](std::size_t w) {
          if (owner[w] >= 0 && owner[w] != static_cast<int>(i)) ++contacts[owner[w]];
        });
      const auto best = std::max_element(contacts.begin(), contacts.end(),
                                         [](const auto& a, const auto& b) { return a.second < b.second; });
      if (best != contacts.end() && best->second >= kMinContactVoxels) {
        auto& into = keep[static_cast<std::size_t>(best->first)];
        into.insert(into.end(), parts[k].begin(), parts[k].end());
      } else {
        loose.push_back(std::move(parts[k]));
      }
    }
  }
  std::vector<Instance> cut;
  for (auto* list : {&keep, &loose})
    for (auto& voxels : *list)
      if (voxels.size() * voxel_ml >= rules.min_vertebra_ml) cut.push_back(make_instance(std::move(voxels), nx, ny, nz));
  instances.swap(cut);
}

}  // namespace

std::size_t drop_candidates_in_front_of_column_end(std::vector<Instance>& instances) {
  std::size_t dropped = 0;
  while (instances.size() >= 4) {
    const Instance& a = instances[instances.size() - 4];
    const Instance& c = instances[instances.size() - 2];
    const Instance& last = instances.back();
    // The column's direction over the three (head to foot) and the perpendicular toward
    // the back, in the sagittal plane (x head to foot, y front to back).
    double dx = c.cx - a.cx, dy = c.cy - a.cy;
    const double len = std::hypot(dx, dy);
    if (len < 1e-6) break;
    dx /= len, dy /= len;
    const double ox = last.cx - c.cx, oy = last.cy - c.cy;
    const double along = ox * dx + oy * dy, behind = -ox * dy + oy * dx;
    if (along <= 0 || behind >= 0) break;
    log::debug("vertebra candidate at head-foot {:.0f} lies {:.0f} voxels in front of the column's line: not bone of "
               "the spine, dropped", last.cx, -behind);
    instances.pop_back();
    ++dropped;
  }
  return dropped;
}

std::vector<Instance> vertebra_instances(const std::vector<std::uint8_t>& vmask,
                                         const std::vector<std::uint8_t>& disc_mask, std::int64_t nx, std::int64_t ny,
                                         std::int64_t nz, int n_levels, const std::function<int(std::size_t)>& level_of,
                                         const InstanceRules& rules, std::vector<std::string>& flags) {
  const double voxel_ml = rules.spacing_mm * rules.spacing_mm * rules.spacing_mm / 1000.0;
  // Longer head to foot than a vertebra can be: neighbours joined through a missed disc
  // or touching posterior elements.
  const double max_extent_mm = rules.bodies ? 45.0 : 60.0;
  std::vector<std::vector<std::size_t>> disc_voxels;
  if (!disc_mask.empty())
    for (auto& d : component_members(disc_mask, nx, ny, nz))
      if (d.size() * voxel_ml >= rules.min_disc_ml) disc_voxels.push_back(std::move(d));
  const std::vector<DiscColumns> discs = disc_columns(disc_voxels, nx, ny);
  std::vector<Instance> instances;
  for (auto& vox : component_members(vmask, nx, ny, nz)) {
    if (vox.size() * voxel_ml < rules.min_vertebra_ml) continue;
    Instance in = make_instance(std::move(vox), nx, ny, nz);
    if ((in.x_max - in.x_min + 1) * rules.spacing_mm <= max_extent_mm) {
      instances.push_back(std::move(in));
      continue;
    }
    // Vertebrae joined at a thin bridge (facet joints, a sliver of missed disc) are cut
    // there; only a part still longer than a vertebra is split by the level votes, which
    // are noisy inside a vertebra.
    auto parts = split_at_thin_joins(in.voxels, nx, ny, nz, rules.max_erosion_voxels, max_extent_mm / rules.spacing_mm);
    log::debug("component of {:.1f} ml, {:.0f} mm head to foot at {:.0f}: cut at thin joins into {}", in.voxels.size() * voxel_ml,
               (in.x_max - in.x_min + 1) * rules.spacing_mm, in.cx, parts.size());
    if (parts.empty()) parts.push_back(std::move(in.voxels));
    for (auto& part : parts) {
      if (part.size() * voxel_ml < rules.min_vertebra_ml) continue;
      Instance p = make_instance(std::move(part), nx, ny, nz);
      if ((p.x_max - p.x_min + 1) * rules.spacing_mm <= max_extent_mm) {
        instances.push_back(std::move(p));
        continue;
      }
      log::debug("part of {:.1f} ml at {:.0f} still too long: split by the level votes", p.voxels.size() * voxel_ml, p.cx);
      const VoxelBox box(p.voxels, nx, ny, nz);
      std::vector<int> level(p.voxels.size());
      for (std::size_t i = 0; i < p.voxels.size(); ++i) level[i] = level_of(p.voxels[i]);
      std::vector<std::uint8_t> sub(box.size());
      for (int l = 0; l < n_levels; ++l) {
        if (std::find(level.begin(), level.end(), l) == level.end()) continue;
        std::fill(sub.begin(), sub.end(), std::uint8_t{0});
        for (std::size_t i = 0; i < p.voxels.size(); ++i)
          if (level[i] == l) sub[box.local(p.voxels[i])] = 1;
        for (auto& piece : box.components(sub))
          if (piece.size() * voxel_ml >= rules.min_vertebra_ml)
            instances.push_back(make_instance(std::move(piece), nx, ny, nz));
      }
    }
  }
  // Candidates off the spinal column (ribs, pelvis taken for vertebra) are dropped.
  {
    std::vector<std::array<double, 3>> vpoints;
    for (std::size_t i = 0; i < vmask.size(); ++i)
      if (vmask[i])
        vpoints.push_back({static_cast<double>(i % nx), static_cast<double>((i / nx) % ny),
                           static_cast<double>(i / static_cast<std::size_t>(nx * ny))});
    const ColumnModel column(vpoints, rules.spacing_mm, 40.0);
    const std::size_t before = instances.size();
    instances.erase(std::remove_if(instances.begin(), instances.end(),
                                   [&](const Instance& in) { return !column.near({in.cx, in.cy, in.cz}, 30.0, 40.0); }),
                    instances.end());
    if (instances.size() < before)
      log::debug("{} vertebra candidates off the spinal column dropped", before - instances.size());
  }
  cut_at_discs(instances, discs, nx, ny, nz, rules);
  // Pieces side by side at one head-foot level are one vertebra, split where the model
  // was unsure (a body cut in two or three left to right): vertebrae follow each other
  // head to foot, never side by side. Adjacent vertebrae, even tilted, have centroids a
  // body height apart; pieces of one body have them within a fraction of that.
  merge_side_by_side(instances, rules.spacing_mm, rules.bodies ? 10.0 : 12.0,
                     max_extent_mm, nx, ny, nz);
  // Fragments much smaller than a typical vertebra of this scan are not vertebrae.
  if (!instances.empty()) {
    std::vector<std::size_t> sizes;
    for (const auto& in : instances) sizes.push_back(in.voxels.size());
    std::nth_element(sizes.begin(), sizes.begin() + sizes.size() / 2, sizes.end());
    const double cutoff = rules.min_fraction_of_median * static_cast<double>(sizes[sizes.size() / 2]);
    instances.erase(std::remove_if(instances.begin(), instances.end(),
                                   [&](const Instance& in) { return static_cast<double>(in.voxels.size()) < cutoff; }),
                    instances.end());
  }
  std::sort(instances.begin(), instances.end(), [](const Instance& a, const Instance& b) { return a.cx < b.cx; });
  drop_candidates_in_front_of_column_end(instances);
  if (instances.size() > rules.max_count) {
    flags.push_back("more vertebra candidates than a spine has; the smallest were dropped");
    std::sort(instances.begin(), instances.end(),
              [](const Instance& a, const Instance& b) { return a.voxels.size() > b.voxels.size(); });
    instances.resize(rules.max_count);
    std::sort(instances.begin(), instances.end(), [](const Instance& a, const Instance& b) { return a.cx < b.cx; });
  }
  return instances;
}

}  // namespace spine
