// 3D Slicer markups (.mrk.json) of the named vertebra centroids.
#include "spine/spine_seg.hpp"

namespace spine {

nlohmann::json slicer_markups(const std::vector<IdentifiedVertebra>& vertebrae) {
  nlohmann::json points = nlohmann::json::array();
  for (std::size_t i = 0; i < vertebrae.size(); ++i) {
    const auto& v = vertebrae[i];
    points.push_back({{"id", std::to_string(i + 1)},
                      {"label", v.name},
                      {"description", "VerSe label " + std::to_string(v.label)},
                      {"associatedNodeID", ""},
                      {"position", v.centroid_lps_mm},
                      {"orientation", {-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0}},
                      {"selected", true},
                      {"locked", false},
                      {"visibility", true},
                      {"positionStatus", "defined"}});
  }
  return {{"@schema", "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                      "Schema/markups-schema-v1.0.3.json#"},
          {"markups",
           {{{"type", "Fiducial"},
             {"coordinateSystem", "LPS"},
             {"coordinateUnits", "mm"},
             {"locked", false},
             {"fixedNumberOfControlPoints", false},
             {"labelFormat", "%N-%d"},
             {"lastUsedControlPointNumber", static_cast<int>(vertebrae.size())},
             {"controlPoints", points},
             {"measurements", nlohmann::json::array()},
             {"display",
              {{"visibility", true}, {"opacity", 1.0}, {"color", {0.4, 1.0, 1.0}}, {"selectedColor", {1.0, 0.5, 0.5}},
               {"propertiesLabelVisibility", true}, {"pointLabelsVisibility", true}, {"textScale", 3.0},
               {"glyphType", "Sphere3D"}, {"glyphScale", 3.0}, {"glyphSize", 5.0}, {"useGlyphScale", true}}}}}}};
}
}  // namespace spine
