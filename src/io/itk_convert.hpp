// Conversions between the library's Image type and ITK images (internal header).
#pragma once
#include <itkImage.h>

#include "spine/image.hpp"

namespace spine::detail {

template <class TPixel, unsigned D>
Geometry geometry_of(const itk::Image<TPixel, D>* img) {
  Geometry g;
  g.dimension = static_cast<int>(D);
  g.size = {1, 1, 1};
  g.spacing = {1, 1, 1};
  g.origin = {0, 0, 0};
  g.direction = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  const auto region = img->GetLargestPossibleRegion();
  for (unsigned i = 0; i < D; ++i) {
    g.size[i] = region.GetSize()[i];
    g.spacing[i] = img->GetSpacing()[i];
    g.origin[i] = img->GetOrigin()[i];
    for (unsigned j = 0; j < D; ++j) g.direction[i * 3 + j] = img->GetDirection()(i, j);
  }
  return g;
}

template <class TOut, class TPixel, unsigned D>
Image<TOut> from_itk(const itk::Image<TPixel, D>* img) {
  Image<TOut> out(geometry_of(img));
  const TPixel* buf = img->GetBufferPointer();
  for (std::size_t i = 0; i < out.voxels.size(); ++i) out.voxels[i] = static_cast<TOut>(buf[i]);
  return out;
}

template <class TPixel, unsigned D, class TIn, class Convert>
typename itk::Image<TPixel, D>::Pointer to_itk(const Image<TIn>& in, Convert convert) {
  using ItkImage = itk::Image<TPixel, D>;
  auto img = ItkImage::New();
  typename ItkImage::RegionType region;
  typename ItkImage::SpacingType spacing;
  typename ItkImage::PointType origin;
  typename ItkImage::DirectionType direction;
  for (unsigned i = 0; i < D; ++i) {
    region.SetSize(i, in.geometry.size[i]);
    spacing[i] = in.geometry.spacing[i];
    origin[i] = in.geometry.origin[i];
    for (unsigned j = 0; j < D; ++j) direction(i, j) = in.geometry.direction[i * 3 + j];
  }
  img->SetRegions(region);
  img->SetSpacing(spacing);
  img->SetOrigin(origin);
  img->SetDirection(direction);
  img->Allocate();
  TPixel* buf = img->GetBufferPointer();
  for (std::size_t i = 0; i < in.voxels.size(); ++i) buf[i] = convert(in.voxels[i]);
  return img;
}

}  // namespace spine::detail
