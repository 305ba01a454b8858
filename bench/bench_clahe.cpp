// CLAHE benchmark: spine::clahe against ITK's AdaptiveHistogramEqualizationImageFilter
// (and OpenCV's CLAHE when available) on the same images, side by side; prints the
// median time of each and their ratio. Usage: bench_clahe [repeats] [threads]
#include <itkAdaptiveHistogramEqualizationImageFilter.h>
#include <itkImage.h>
#include <itkMultiThreaderBase.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#ifdef SPINE_BENCH_OPENCV
#include <opencv2/imgproc.hpp>
#endif

#include "spine/phantom.hpp"
#include "spine/preprocess.hpp"

namespace {

double median_seconds(int repeats, const std::function<void()>& f) {
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

template <class T, unsigned D>
typename itk::Image<T, D>::Pointer to_itk(const spine::FloatImage& img) {
  auto out = itk::Image<T, D>::New();
  typename itk::Image<T, D>::RegionType region;
  for (unsigned a = 0; a < D; ++a) region.SetSize(a, img.geometry.size[a]);
  out->SetRegions(region);
  out->Allocate();
  std::transform(img.voxels.begin(), img.voxels.end(), out->GetBufferPointer(),
                 [](float v) { return static_cast<T>(v); });
  return out;
}

// Integer pixels are ITK's fast case (8-bit radiographs, 16-bit CT); float is ~20x slower.
template <class T, unsigned D>
double itk_ahe(const spine::FloatImage& img, unsigned radius, int repeats) {
  auto input = to_itk<T, D>(img);
  return median_seconds(repeats, [&] {
    auto f = itk::AdaptiveHistogramEqualizationImageFilter<itk::Image<T, D>>::New();
    f->SetInput(input);
    f->SetRadius(radius);
    f->SetAlpha(0.0);  // classic equalisation, the closest ITK has to CLAHE
    f->SetBeta(0.0);
    f->Update();
  });
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 3;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  itk::MultiThreaderBase::SetGlobalDefaultNumberOfThreads(threads);
#ifdef SPINE_BENCH_OPENCV
  cv::setNumThreads(threads);
#endif

  // 2048 x 1024 radiograph: a phantom radiograph resampled to that grid, 8-bit values.
  spine::RadiographConfig rc;
  rc.pixel_mm = 0.5;
  const auto xr = spine::make_phantom_radiograph(rc);
  spine::Geometry g2 = spine::make_geometry_2d(1024, 2048, {xr.image.nx() * 0.5 / 1024, xr.image.ny() * 0.5 / 2048});
  g2.origin = {0, 0, 0};
  spine::FloatImage radiograph = xr.image;
  radiograph.geometry.spacing = {0.5, 0.5, 1};
  radiograph = spine::resample_image_to(radiograph, g2);

  // 128^3 volume: a CT phantom cropped/padded to 128^3.
  spine::PhantomConfig pc;
  pc.first_vertebra = "L2";
  pc.last_vertebra = "L4";
  pc.spacing_mm = 1.2;
  const auto ct = spine::make_phantom_volume(pc);
  spine::FloatImage volume(spine::make_geometry(128, 128, 128), -1000.f);
  for (std::size_t k = 0; k < 128 && k < ct.image.nz(); ++k)
    for (std::size_t j = 0; j < 128 && j < ct.image.ny(); ++j)
      for (std::size_t i = 0; i < 128 && i < ct.image.nx(); ++i) volume.at(i, j, k) = ct.image.at(i, j, k);

  spine::ClaheConfig c2;
  c2.tiles = {8, 16, 1};  // ~128-pixel tiles, comparable to ITK's radius 64 window
  const double ours_2d = median_seconds(repeats, [&] { spine::clahe(radiograph, c2); });
  const double itk_2d = itk_ahe<unsigned char, 2>(radiograph, 32, 1);
  std::printf("2D 2048x1024 8-bit: spine::clahe %.4f s, ITK AdaptiveHistogramEqualization (radius 32) %.3f s, "
              "ratio ITK/spine %.0fx\n", ours_2d, itk_2d, itk_2d / ours_2d);
#ifdef SPINE_BENCH_OPENCV
  {
    cv::Mat m(2048, 1024, CV_8UC1);
    for (std::size_t i = 0; i < radiograph.voxels.size(); ++i) m.data[i] = static_cast<unsigned char>(radiograph.voxels[i]);
    auto cl = cv::createCLAHE(2.0, cv::Size(8, 16));
    cv::Mat out;
    const double cv_2d = median_seconds(repeats, [&] { cl->apply(m, out); });
    std::printf("2D 2048x1024: OpenCV CLAHE %.4f s, ratio spine/OpenCV %.2fx\n", cv_2d, ours_2d / cv_2d);
  }
#endif
  spine::ClaheConfig c3;
  c3.tiles = {4, 4, 4};
  const double ours_3d = median_seconds(repeats, [&] { spine::clahe(volume, c3); });
  const double itk_3d = itk_ahe<short, 3>(volume, 8, 1);
  std::printf("3D 128^3 16-bit: spine::clahe %.4f s, ITK AdaptiveHistogramEqualization (radius 8) %.3f s, "
              "ratio ITK/spine %.0fx\n", ours_3d, itk_3d, itk_3d / ours_3d);
  return 0;
}
