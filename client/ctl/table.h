// Plain-text tables for moepoolctl's human output: a header row and aligned columns,
// numbers right-aligned, two spaces between columns, no trailing blanks.
// Thread safety: one table per thread.
#pragma once

#include <string>
#include <vector>

namespace moepool::ctl {

class Table {
 public:
  // `right[i]` right-aligns column i (numbers); the header sets the column count.
  Table(std::vector<std::string> header, std::vector<bool> right);
  // Adds a row; missing cells are blank, extra cells are dropped.
  void add_row(std::vector<std::string> cells);
  std::string render() const;

 private:
  std::vector<std::vector<std::string>> rows_;  // rows_[0] is the header
  std::vector<bool> right_;
};

}  // namespace moepool::ctl
