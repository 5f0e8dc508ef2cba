// Helpers for the reliability tests: folder listings, and a CLI child process that can be killed
// at a chosen moment. Folder snapshots are file_digests (tests/core/fixtures.hpp).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/core/fixtures.hpp"

extern char** environ;

namespace umload::test {

inline std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  if (!fs::exists(dir)) return names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  return names;
}

// The CLI started in the background with stdout and stderr discarded.
class cli_child {
 public:
  explicit cli_child(const std::vector<std::string>& args) {
    std::vector<std::string> argv_text{UMLOAD_CLI};
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_text) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    if (::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~cli_child() {
    if (pid_ > 0) kill_and_wait();
  }
  bool started() const { return pid_ > 0; }
  // SIGKILL, then reap; returns true when the child was still running.
  bool kill_and_wait() {
    const bool running = ::waitpid(pid_, nullptr, WNOHANG) == 0;
    if (running) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
    return running;
  }
  int wait() {
    int raw = 0;
    ::waitpid(pid_, &raw, 0);
    pid_ = -1;
    return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  }

 private:
  pid_t pid_ = -1;
};

}  // namespace umload::test
