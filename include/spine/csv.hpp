// RFC 4180 CSV fields: quoting on output, one record's fields on input.
#pragma once
#include <string>
#include <vector>

namespace spine {

// The field as written in a CSV record: quoted (inner quotes doubled) when it holds a
// comma, a quote or a line break, as is otherwise.
std::string csv_field(const std::string& s);

// v rounded to a multiple of unit (0.01, 0.1, 1, 5...). For a unit below one, divides by
// its inverse instead of multiplying by the unit, so that 85.46 comes out as the double
// nearest to 85.46 (printed "85.46"), not 8546 * 0.01 = 85.46000000000001.
double round_to(double v, double unit);

// A number as a CSV field: the shortest text that reads back as the same double; empty
// for NaN or infinity (a missing value to pandas and R).
std::string csv_number(double v);

// The fields of one CSV line (no embedded line breaks). Throws std::runtime_error on an
// unterminated quote.
std::vector<std::string> parse_csv_line(const std::string& line);

}  // namespace spine
