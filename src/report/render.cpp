// Overlay drawing through OpenCV (Debian's libopencv-imgproc): anti-aliased lines and
// readable text are much better done by it than by hand.
#include "spine/render.hpp"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

namespace spine {
namespace {

cv::Mat wrap(RgbImage& c) {
  return cv::Mat(static_cast<int>(c.height), static_cast<int>(c.width), CV_8UC3, c.rgb.data());
}
cv::Scalar colour_of(Rgb c) { return cv::Scalar(c[0], c[1], c[2]); }
cv::Point point_of(Point2 p) { return cv::Point(static_cast<int>(std::lround(p.x)), static_cast<int>(std::lround(p.y))); }

}  // namespace

RgbImage grey_to_rgb(const FloatImage& img, float lo, float hi, double scale) {
  const int w = static_cast<int>(img.nx()), h = static_cast<int>(img.ny());
  cv::Mat grey(h, w, CV_8UC1);
  const float k = hi > lo ? 255.f / (hi - lo) : 0.f;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      grey.at<unsigned char>(y, x) =
          static_cast<unsigned char>(std::clamp((img.voxels[static_cast<std::size_t>(y) * w + x] - lo) * k, 0.f, 255.f));
  if (scale != 1.0) {
    cv::Mat resized;
    cv::resize(grey, resized, cv::Size(), scale, scale, scale < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
    grey = resized;
  }
  RgbImage out;
  out.width = static_cast<std::size_t>(grey.cols);
  out.height = static_cast<std::size_t>(grey.rows);
  out.rgb.resize(out.width * out.height * 3);
  cv::Mat dst = wrap(out);
  cv::cvtColor(grey, dst, cv::COLOR_GRAY2RGB);
  return out;
}

void draw_line(RgbImage& canvas, Point2 a, Point2 b, Rgb colour, int thickness) {
  cv::Mat m = wrap(canvas);
  cv::line(m, point_of(a), point_of(b), colour_of(colour), thickness, cv::LINE_AA);
}

void draw_circle(RgbImage& canvas, Point2 centre, double radius, Rgb colour, bool filled) {
  cv::Mat m = wrap(canvas);
  cv::circle(m, point_of(centre), std::max(1, static_cast<int>(std::lround(radius))), colour_of(colour),
             filled ? cv::FILLED : 1, cv::LINE_AA);
}

namespace {
constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
double font_scale(double height_px) { return height_px / 22.0; }
int font_thickness(double scale) { return std::max(1, static_cast<int>(std::lround(scale * 1.5))); }
}  // namespace

int text_width(const std::string& text, double height_px) {
  const double scale = font_scale(height_px);
  int baseline = 0;
  const cv::Size size = cv::getTextSize(text, kFont, scale, font_thickness(scale), &baseline);
  return size.width + 2 * std::max(2, size.height / 4);
}

int draw_text(RgbImage& canvas, const std::string& text, Point2 at, double height_px, Rgb colour) {
  cv::Mat m = wrap(canvas);
  const int font = kFont;
  double scale = font_scale(height_px);
  int thickness = font_thickness(scale);
  int baseline = 0;
  cv::Size size = cv::getTextSize(text, font, scale, thickness, &baseline);
  // Keep the whole line on the canvas: move it in from the left edge, and shrink it when
  // it would run past the right edge (long lines on narrow radiographs).
  cv::Point origin = point_of(at);
  origin.x = std::clamp(origin.x, 2, std::max(2, m.cols - size.width - 2));
  if (origin.x + size.width > m.cols - 2 && size.width > 0) {
    scale *= std::max(0.3, static_cast<double>(m.cols - 2 - origin.x) / size.width);
    thickness = font_thickness(scale);
    size = cv::getTextSize(text, font, scale, thickness, &baseline);
  }
  const int pad = std::max(2, size.height / 4);
  cv::Rect box(origin.x - pad, origin.y - pad, size.width + 2 * pad, size.height + baseline + 2 * pad);
  box &= cv::Rect(0, 0, m.cols, m.rows);
  if (box.area() > 0) {
    cv::Mat roi = m(box);
    roi *= 0.35;  // darken behind the text
  }
  cv::putText(m, text, cv::Point(origin.x, origin.y + size.height), font, scale, colour_of(colour), thickness,
              cv::LINE_AA);
  return size.height + baseline + 2 * pad;
}

}  // namespace spine
