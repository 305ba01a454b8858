// Frontal radiograph landmark detection: the 68 AASCE vertebra corners (T1..L5) from a
// heatmap + corner-offset model (models/xray-landmarks.pt), with per-vertebra confidence.
#pragma once
#include <string>
#include <vector>

#include "spine/cobb.hpp"
#include "spine/image.hpp"
#include "spine/model.hpp"
#include "spine/tensor.hpp"

namespace spine {

// The model's input contract (scripts/cobb/preprocess.py): bilinear resize with half-pixel
// centres and no antialiasing to 1024 x 512 (H x W), 2 x 2 average pooling to 512 x 256,
// z-score over the image. Returns [1, 1, 512, 256].
Tensor xray_model_input(const FloatImage& radiograph);

struct XrayLandmarks {
  std::vector<Point2> points;           // 68, input image pixels, AASCE order
  std::vector<double> confidence;       // 17, per vertebra: heatmap peak, about 0..1
  std::vector<std::string> flags;       // reasons not to trust the result
  // Vertebrae whose centre the sequence constraint took from a weaker heatmap peak than
  // the strongest (information, not a flag: it is common and usually right).
  std::vector<std::string> sequence_adjusted;
};

struct XrayLandmarkOptions {
  double low_confidence = 0.3;          // below: the vertebra is flagged
  double missing_confidence = 0.1;      // below: the vertebra is called missing
  // Choose each vertebra's centre among its heatmap's strongest peaks so that the 17
  // centres run top to bottom with plausible spacing (Viterbi over the chain), instead
  // of taking every heatmap's maximum on its own.
  bool sequence_constraint = true;
  // Average the prediction with that for the mirrored image (test-time augmentation).
  bool flip_averaging = true;
};

// Decodes a model output [1, 17 + 8, h, w] for an image of the given size (pixels).
XrayLandmarks decode_xray_landmarks(const Tensor& output, std::size_t width, std::size_t height,
                                    int stride, double offset_scale, const XrayLandmarkOptions& options = {});

class XrayLandmarkDetector {
 public:
  XrayLandmarkDetector(const Model& model, XrayLandmarkOptions options = {});
  // Throws an input error for images that are not 2D or are too small or too large.
  XrayLandmarks detect(const FloatImage& radiograph) const;

 private:
  const Model& model_;
  XrayLandmarkOptions options_;
  int stride_ = 4;
  double offset_scale_ = 16;
};

}  // namespace spine
