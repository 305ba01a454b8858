// N4 bias field correction through ITK, computed on a shrunken grid and applied at full
// resolution (the field is smooth, so shrinking loses nothing and saves most of the time).
#include <itkBSplineControlPointImageFilter.h>
#include <itkExpImageFilter.h>
#include <itkN4BiasFieldCorrectionImageFilter.h>
#include <itkShrinkImageFilter.h>

#include <cmath>

#include "io/itk_convert.hpp"
#include "spine/error.hpp"
#include "spine/preprocess.hpp"

namespace spine {
namespace {

template <unsigned D>
FloatImage n4_impl(const FloatImage& image, const LabelImage* mask, const N4Config& config,
                   FloatImage* bias_out) {
  using ImageType = itk::Image<float, D>;
  using MaskType = itk::Image<unsigned char, D>;
  auto input = detail::to_itk<float, D>(image, [](float v) { return v; });
  typename MaskType::Pointer mask_img;
  if (mask) {
    mask_img = detail::to_itk<unsigned char, D>(*mask, [](std::int16_t v) { return v != 0 ? 1 : 0; });
  } else {
    // Without a mask: fit on the foreground, everything above the lowest intensity.
    const float floor_value = intensity_range(image).min;
    mask_img = detail::to_itk<unsigned char, D>(image, [&](float v) { return v > floor_value ? 1 : 0; });
  }
  auto shrink = itk::ShrinkImageFilter<ImageType, ImageType>::New();
  shrink->SetInput(input);
  shrink->SetShrinkFactors(static_cast<unsigned>(config.shrink_factor));
  auto shrink_mask = itk::ShrinkImageFilter<MaskType, MaskType>::New();
  shrink_mask->SetInput(mask_img);
  shrink_mask->SetShrinkFactors(static_cast<unsigned>(config.shrink_factor));
  shrink->Update();
  shrink_mask->Update();

  using N4 = itk::N4BiasFieldCorrectionImageFilter<ImageType, MaskType, ImageType>;
  auto n4 = N4::New();
  n4->SetInput(shrink->GetOutput());
  n4->SetMaskImage(shrink_mask->GetOutput());
  n4->SetMaskLabel(1);
  typename N4::VariableSizeArrayType iterations(config.iterations.size());
  for (std::size_t i = 0; i < config.iterations.size(); ++i) iterations[i] = config.iterations[i];
  n4->SetMaximumNumberOfIterations(iterations);
  n4->SetNumberOfFittingLevels(static_cast<unsigned>(config.iterations.size()));
  n4->SetConvergenceThreshold(config.convergence);
  typename N4::ArrayType control_points;
  control_points.Fill(config.control_points);
  n4->SetNumberOfControlPoints(control_points);
  n4->Update();

  // Evaluate the B-spline log field on the full-resolution grid.
  using Lattice = typename N4::BiasFieldControlPointLatticeType;
  using ScalarImage = itk::Image<typename Lattice::PixelType, D>;
  auto bspline = itk::BSplineControlPointImageFilter<Lattice, ScalarImage>::New();
  bspline->SetInput(n4->GetLogBiasFieldControlPointLattice());
  bspline->SetSplineOrder(n4->GetSplineOrder());
  bspline->SetSize(input->GetLargestPossibleRegion().GetSize());
  bspline->SetOrigin(input->GetOrigin());
  bspline->SetSpacing(input->GetSpacing());
  bspline->SetDirection(input->GetDirection());
  bspline->Update();
  const auto* log_field = bspline->GetOutput()->GetBufferPointer();

  FloatImage corrected = image;
  if (bias_out) *bias_out = FloatImage(image.geometry);
  for (std::size_t i = 0; i < corrected.voxels.size(); ++i) {
    const float field = std::exp(static_cast<float>(log_field[i][0]));
    corrected.voxels[i] = image.voxels[i] / field;
    if (bias_out) bias_out->voxels[i] = field;
  }
  return corrected;
}

}  // namespace

FloatImage n4_bias_correct(const FloatImage& image, const LabelImage* mask, const N4Config& config,
                           FloatImage* bias_out) {
  if (config.shrink_factor < 1) throw usage_error("N4 shrink factor must be >= 1");
  if (config.iterations.empty()) throw usage_error("N4 needs at least one fitting level");
  if (config.control_points < 4) throw usage_error("N4 needs at least 4 control points (spline order 3)");
  if (mask && !mask->geometry.same_grid(image.geometry, 1e-4))
    throw input_error("N4 mask grid differs from the image grid");
  try {
    return image.geometry.dimension == 2 ? n4_impl<2>(image, mask, config, bias_out)
                                         : n4_impl<3>(image, mask, config, bias_out);
  } catch (const itk::ExceptionObject& e) {
    throw input_error(std::string("N4 bias correction failed: ") + e.GetDescription());
  }
}

}  // namespace spine
