// Shared pieces of the command line: the progress bar, byte formatting, and the mapping of
// common options onto library options.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "platform/units.hpp"
#include "src/pipeline.hpp"

namespace umload::cli {

// A progress callback that draws a bar on stderr when it is a terminal (bytes, rate, ETA) and
// does nothing otherwise; `json` prints one JSON line per update instead, for tools.
std::function<void(const progress_event&)> make_progress(bool enabled, bool json);
// Ends the bar's line (when one was drawn).
void end_progress();

// An error message made safe for one line of a terminal: control characters (a newline inside a
// tensor name from a hostile header) are written as \xNN escapes.
std::string one_line(std::string_view message);
std::string human_rate(double bytes_per_second);

}  // namespace umload::cli
