// Helpers for integration tests: a temp directory, a real moepoold process, synthetic
// models written by the real moepool-synth, and real worker processes.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "moepool/client.h"

extern char** environ;

namespace moepool::testing {

namespace fs = std::filesystem;

inline std::string bin(const std::string& name) { return std::string(MOEPOOL_BIN_DIR) + "/" + name; }
inline std::string test_bin(const std::string& name) { return std::string(MOEPOOL_TEST_DIR) + "/" + name; }

// A child process with its stdout on a pipe.
class Process {
 public:
  Process() = default;
  explicit Process(const std::vector<std::string>& argv, bool capture = true) { start(argv, capture); }
  Process(Process&& o) noexcept { *this = std::move(o); }
  Process& operator=(Process&& o) noexcept {
    std::swap(pid_, o.pid_);
    std::swap(out_, o.out_);
    return *this;
  }
  ~Process() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) close(out_);
  }
  void start(const std::vector<std::string>& argv, bool capture) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    int p[2] = {-1, -1};
    if (capture) {
      ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
      posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    }
    int rc = posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ASSERT_EQ(rc, 0) << "cannot start " << argv[0];
    if (capture) {
      close(p[1]);
      out_ = p[0];
    }
  }
  pid_t pid() const { return pid_; }
  // Reads one line of the child's stdout (blocking); "" at EOF.
  std::string read_line() {
    std::string line;
    char c;
    while (read(out_, &c, 1) == 1) {
      if (c == '\n') return line;
      line += c;
    }
    return line;
  }
  // Reads all remaining stdout.
  std::string read_all() {
    std::string s;
    char buf[4096];
    ssize_t n;
    while ((n = read(out_, buf, sizeof buf)) > 0) s.append(buf, n);
    return s;
  }
  // Waits for exit; returns the exit code, or 128 + signal.
  int wait() {
    int st = 0;
    waitpid(pid_, &st, 0);
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  void signal(int sig) { kill(pid_, sig); }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

// Reads `bytes` bytes of `path` at `offset` (the test's own view of a model file).
inline std::vector<uint8_t> file_bytes(const std::string& path, uint64_t offset, uint64_t bytes) {
  std::vector<uint8_t> out(bytes);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << path;
  EXPECT_EQ(pread(fd, out.data(), bytes, static_cast<off_t>(offset)), static_cast<ssize_t>(bytes));
  close(fd);
  return out;
}

// Runs a command to completion; returns {exit code, stdout}.
inline std::pair<int, std::string> run(const std::vector<std::string>& argv) {
  Process p(argv);
  std::string out = p.read_all();
  return {p.wait(), out};
}

// A temp dir (on a real filesystem so O_DIRECT works), a model root inside it and a
// moepoold serving it.
class DaemonFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path("/var/tmp") / ("moepool-it-" + std::to_string(getpid()) + "-" +
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "models");
    socket_ = (dir_ / "run" / "moepool.sock").string();
  }
  void TearDown() override {
    daemon_ = Process();
    fs::remove_all(dir_);
  }

  std::string models() const { return (dir_ / "models").string(); }

  // Writes a synthetic model with moepool-synth; returns its path.
  std::string synth(const std::string& name, std::vector<std::string> args) {
    std::string out = models() + "/" + name;
    std::vector<std::string> argv = {bin("moepool-synth"), "--out", out};
    argv.insert(argv.end(), args.begin(), args.end());
    auto [rc, text] = run(argv);
    EXPECT_EQ(rc, 0) << text;
    return out;
  }

  // Starts moepoold (or another daemon binary of build/bin that takes its flags) and waits
  // (by polling connect) until it serves.
  void start_daemon(const std::string& pool_size, std::vector<std::string> extra = {},
                    const std::string& program = "moepoold") {
    std::vector<std::string> argv = {bin(program), "--socket", socket_, "--pool-size", pool_size,
                                     "--model-root", models(), "--state-dir",
                                     (dir_ / "state").string(), "--log-level", "warn"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    daemon_ = Process(argv, /*capture=*/false);
    for (int i = 0; i < 500; ++i) {
      auto c = Client::connect(socket_, "probe");
      if (c.ok()) return;
      ASSERT_EQ(waitpid(daemon_.pid(), nullptr, WNOHANG), 0) << "moepoold exited during start";
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // poll interval
    }
    FAIL() << "moepoold did not start serving on " << socket_;
  }

  std::unique_ptr<Client> connect(const std::string& name = "test") {
    auto c = Client::connect(socket_, name);
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  fs::path dir_;
  std::string socket_;
  Process daemon_;
};

}  // namespace moepool::testing
