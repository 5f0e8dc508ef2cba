// JUnit XML for CI systems that read it (GitHub, GitLab, Jenkins): one <testsuite> per machine,
// one <testcase> per run named "PROFILE on DEVICE". A failed run or a digest that differs is a
// <failure> carrying the judgement's message; a run whose plan does not fit is <skipped>.
#pragma once

#include <string>
#include <vector>

#include "src/cli/matrix_judge.hpp"
#include "src/cli/matrix_record.hpp"

namespace umload::cli::matrix {

std::string junit_xml(const std::vector<run_record>& records, const judgement& judged);

}  // namespace umload::cli::matrix
