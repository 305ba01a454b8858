// Drawing for pictures a person checks (overlays): grey-to-colour conversion, lines,
// markers and text. OpenCV does the drawing behind this header.
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "spine/cobb.hpp"
#include "spine/image.hpp"
#include "spine/io.hpp"

namespace spine {

using Rgb = std::array<std::uint8_t, 3>;

// A 2D image (or one slice) as an RGB picture, grey values lo..hi stretched to 0..255,
// resized by `scale`.
RgbImage grey_to_rgb(const FloatImage& image2d, float lo, float hi, double scale = 1.0);

void draw_line(RgbImage& canvas, Point2 a, Point2 b, Rgb colour, int thickness = 1);
void draw_circle(RgbImage& canvas, Point2 centre, double radius, Rgb colour, bool filled = true);
// Text with its top-left corner at `at`, on a dark box so it reads on any background.
// Returns the height of the line in pixels.
int draw_text(RgbImage& canvas, const std::string& text, Point2 at, double height_px, Rgb colour);
// Width in pixels that draw_text gives `text` at `height_px` (its dark box included), so
// that a caller can make room for it instead of letting it cover the picture.
int text_width(const std::string& text, double height_px);

}  // namespace spine
