// What `umload matrix run` and `umload matrix compare` print: a table of machine x profile x
// device (strategy, time, peaks measured and predicted, digest agreement), or the same as JSON.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "src/cli/matrix_judge.hpp"
#include "src/cli/matrix_record.hpp"

namespace umload::cli::matrix {

// Aligned columns, one line per run, then one line saying whether the digests agree.
std::string text_table(const std::vector<run_record>& records, const judgement& judged);

// {"agree", "reference", "counts", "machines", "runs": [... each with "agreement"], "messages"}.
nlohmann::json judgement_json(const std::vector<run_record>& records, const judgement& judged);

// One sentence: "18 runs on 2 machines: every digest agrees" or what differs.
std::string summary_line(const std::vector<run_record>& records, const judgement& judged);

}  // namespace umload::cli::matrix
