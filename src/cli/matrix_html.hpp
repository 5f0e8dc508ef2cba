// The matrix as one self-contained HTML page for people: the verdict, a chart drawn as inline
// SVG (load time, and peak memory measured beside predicted, per machine and run), the table of
// every run and the machines they ran on. No scripts, fonts or anything else is fetched.
#pragma once

#include <string>
#include <vector>

#include "src/cli/matrix_judge.hpp"
#include "src/cli/matrix_record.hpp"

namespace umload::cli::matrix {

std::string html_report(const std::vector<run_record>& records, const judgement& judged);

// The chart alone: an <svg> element (id "matrix-chart").
std::string svg_chart(const std::vector<run_record>& records, const judgement& judged);

}  // namespace umload::cli::matrix
