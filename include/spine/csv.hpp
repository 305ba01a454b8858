// RFC 4180 CSV fields: quoting on output, one record's fields on input.
#pragma once
#include <string>
#include <vector>

namespace spine {

// The field as written in a CSV record: quoted (inner quotes doubled) when it holds a
// comma, a quote or a line break, as is otherwise.
std::string csv_field(const std::string& s);

// The fields of one CSV line (no embedded line breaks). Throws std::runtime_error on an
// unterminated quote.
std::vector<std::string> parse_csv_line(const std::string& line);

}  // namespace spine
