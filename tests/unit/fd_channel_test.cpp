#include "common/fd_channel.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <thread>

namespace moepool {
namespace {

// A connected AF_UNIX stream pair, closed at scope end.
struct SocketPair {
  int a = -1, b = -1;
  SocketPair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0) << std::strerror(errno);
    a = sv[0];
    b = sv[1];
  }
  void close_a() {
    if (a >= 0) ::close(a);
    a = -1;
  }
  ~SocketPair() {
    close_a();
    if (b >= 0) ::close(b);
  }
};

// `n` distinct memfds (distinct inodes), closed at scope end.
struct MemFds {
  std::vector<int> fds;
  explicit MemFds(size_t n) {
    for (size_t i = 0; i < n; ++i) {
      int fd = ::memfd_create("fd_channel_test", MFD_CLOEXEC);
      EXPECT_GE(fd, 0) << std::strerror(errno);
      fds.push_back(fd);
    }
  }
  ~MemFds() { close_all(&fds); }
  static void close_all(std::vector<int>* v) {
    for (int fd : *v) ::close(fd);
    v->clear();
  }
};

ino_t inode_of(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0) << "fd " << fd << ": " << std::strerror(errno);
  return st.st_ino;
}

size_t open_fd_count() {
  size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

void expect_same_files(const std::vector<int>& sent, const std::vector<int>& got) {
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(inode_of(got[i]), inode_of(sent[i])) << "fd #" << i;
    EXPECT_TRUE(::fcntl(got[i], F_GETFD) & FD_CLOEXEC) << "fd #" << i << " lacks FD_CLOEXEC";
  }
}

// Raw sendmsg of `len` bytes with `fds` attached, bypassing send_with_fds.
void raw_send(int sock, const void* data, size_t len, const int* fds, size_t n_fds) {
  iovec iov{const_cast<void*>(data), len};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(n_fds * sizeof(int)));
  if (n_fds > 0) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
    std::memcpy(CMSG_DATA(cm), fds, n_fds * sizeof(int));
  }
  ASSERT_EQ(::sendmsg(sock, &msg, MSG_NOSIGNAL), static_cast<ssize_t>(len)) << std::strerror(errno);
}

class FdChannel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // 300 sent + 300 received + those in flight: make sure the soft limit allows it.
    rlimit rl{};
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 2048 && rl.rlim_max > rl.rlim_cur) {
      rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, 4096);
      ::setrlimit(RLIMIT_NOFILE, &rl);
    }
  }
};

TEST_F(FdChannel, SendsDataAndFewFds) {
  SocketPair sp;
  MemFds files(3);
  FdReply out{};
  out.fd_count = 3;
  ASSERT_TRUE(send_with_fds(sp.a, &out, sizeof(out), files.fds).ok());
  FdReply in{};
  std::vector<int> got;
  Status st = recv_with_fds(sp.b, &in, sizeof(in), &got);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(in.magic, kFdChannelMagic);
  EXPECT_EQ(in.fd_count, 3u);
  expect_same_files(files.fds, got);
  MemFds::close_all(&got);
}

TEST_F(FdChannel, SendsDataWithoutFds) {
  SocketPair sp;
  const char text[] = "no descriptors here";
  ASSERT_TRUE(send_with_fds(sp.a, text, sizeof(text), {}).ok());
  char in[sizeof(text)] = {};
  std::vector<int> got;
  ASSERT_TRUE(recv_with_fds(sp.b, in, sizeof(in), &got).ok());
  EXPECT_STREQ(in, text);
  EXPECT_TRUE(got.empty());
}

TEST_F(FdChannel, SendsThreeHundredFdsInOneCall) {
  SocketPair sp;
  MemFds files(300);
  FdReply out{};
  out.fd_count = 300;
  Status send_status;
  std::thread sender([&] { send_status = send_with_fds(sp.a, &out, sizeof(out), files.fds); });
  FdReply in{};
  std::vector<int> got;
  Status st = recv_with_fds(sp.b, &in, sizeof(in), &got);
  sender.join();
  ASSERT_TRUE(send_status.ok()) << send_status.to_string();
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(std::memcmp(&in, &out, sizeof(in)), 0) << "header bytes differ";
  expect_same_files(files.fds, got);
  MemFds::close_all(&got);
}

TEST_F(FdChannel, SplitsIntoMessagesOfAtMostMaxFds) {
  SocketPair sp;
  MemFds files(300);
  FdReply out{};
  ASSERT_TRUE(send_with_fds(sp.a, &out, sizeof(out), files.fds).ok());
  sp.close_a();
  // Read message by message with raw recvmsg and count the fds each one carried.
  std::vector<size_t> per_message;
  std::vector<int> got;
  for (;;) {
    char buf[64];
    iovec iov{buf, 1};  // one byte at a time: never merges two messages' fds
    alignas(cmsghdr) char control[CMSG_SPACE(253 * sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = ::recvmsg(sp.b, &msg, MSG_CMSG_CLOEXEC);
    ASSERT_GE(n, 0) << std::strerror(errno);
    if (n == 0) break;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
      size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      per_message.push_back(k);
      for (size_t i = 0; i < k; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
        got.push_back(fd);
      }
    }
  }
  ASSERT_GE(per_message.size(), 2u);
  for (size_t k : per_message) EXPECT_LE(k, kMaxFdsPerMessage);
  EXPECT_EQ(per_message.front(), kMaxFdsPerMessage);
  expect_same_files(files.fds, got);
  MemFds::close_all(&got);
}

TEST_F(FdChannel, CollectsFdsThatAPeerSentInSeparateMessages) {
  // A peer may frame chunks itself: header + 250 fds, then a filler byte + the rest.
  SocketPair sp;
  MemFds files(300);
  FdReply out{};
  out.fd_count = 300;
  ASSERT_TRUE(send_with_fds(sp.a, &out, sizeof(out),
                            std::vector<int>(files.fds.begin(), files.fds.begin() + 250))
                  .ok());
  uint8_t filler = 0;
  ASSERT_TRUE(
      send_with_fds(sp.a, &filler, 1, std::vector<int>(files.fds.begin() + 250, files.fds.end()))
          .ok());
  FdReply in{};
  std::vector<int> got;
  ASSERT_TRUE(recv_with_fds(sp.b, &in, sizeof(in), &got).ok());
  EXPECT_EQ(got.size(), 250u);
  ASSERT_TRUE(recv_with_fds(sp.b, &filler, 1, &got).ok());
  expect_same_files(files.fds, got);
  MemFds::close_all(&got);
}

TEST_F(FdChannel, ReassemblesShortReads) {
  SocketPair sp;
  MemFds files(2);
  uint8_t out[16];
  for (int i = 0; i < 16; ++i) out[i] = static_cast<uint8_t>(0xA0 + i);
  raw_send(sp.a, out, 1, files.fds.data(), 2);  // fds ride on the first byte only
  raw_send(sp.a, out + 1, 2, nullptr, 0);
  raw_send(sp.a, out + 3, 13, nullptr, 0);
  uint8_t in[16] = {};
  std::vector<int> got;
  Status st = recv_with_fds(sp.b, in, sizeof(in), &got);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(std::memcmp(in, out, sizeof(in)), 0);
  expect_same_files(files.fds, got);
  MemFds::close_all(&got);
}

TEST_F(FdChannel, PeerClosingMidMessageIsAnErrorAndLeaksNoFds) {
  SocketPair sp;
  MemFds files(4);
  uint8_t out[10] = {};
  raw_send(sp.a, out, sizeof(out), files.fds.data(), 4);
  sp.close_a();
  size_t open_before = open_fd_count();
  uint8_t in[16];
  std::vector<int> got = {-42};  // fds already in the vector stay untouched
  Status st = recv_with_fds(sp.b, in, sizeof(in), &got);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("10 of 16"), std::string::npos) << st.message();
  EXPECT_EQ(got, std::vector<int>{-42});
  EXPECT_EQ(open_fd_count(), open_before);
}

TEST_F(FdChannel, PeerClosingBeforeAnyByteIsAnError) {
  SocketPair sp;
  sp.close_a();
  FdReply in{};
  std::vector<int> got;
  Status st = recv_with_fds(sp.b, &in, sizeof(in), &got);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("0 of 16"), std::string::npos) << st.message();
}

TEST_F(FdChannel, ReceiveTimeoutIsAnError) {
  SocketPair sp;
  timeval tv{0, 20000};
  ASSERT_EQ(::setsockopt(sp.b, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
  FdReply in{};
  std::vector<int> got;
  Status st = recv_with_fds(sp.b, &in, sizeof(in), &got);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("timed out"), std::string::npos) << st.message();
}

TEST_F(FdChannel, RejectsMoreChunksThanDataBytes) {
  SocketPair sp;
  MemFds files(300);  // two chunks need two data bytes
  uint8_t one = 1;
  Status st = send_with_fds(sp.a, &one, 1, files.fds);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("300 fds"), std::string::npos) << st.message();
}

TEST_F(FdChannel, SendingABadFdIsAnError) {
  SocketPair sp;
  uint8_t one = 1;
  Status st = send_with_fds(sp.a, &one, 1, {-1});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("sendmsg"), std::string::npos) << st.message();
}

TEST_F(FdChannel, SendingToAClosedPeerIsAnErrorNotASignal) {
  SocketPair sp;
  ::close(sp.b);
  sp.b = -1;
  uint8_t one = 1;
  Status st = send_with_fds(sp.a, &one, 1, {});
  ASSERT_FALSE(st.ok());  // EPIPE as a Status; SIGPIPE would have killed the test
}

std::atomic<int> g_signals{0};
void count_signal(int) { g_signals.fetch_add(1); }

TEST_F(FdChannel, ReceiveContinuesAfterEintr) {
  struct sigaction sa {};
  sa.sa_handler = count_signal;  // no SA_RESTART: a blocked recvmsg returns EINTR
  sigemptyset(&sa.sa_mask);
  struct sigaction old {};
  ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);
  SocketPair sp;
  MemFds files(1);
  std::atomic<bool> started{false};
  Status st;
  std::vector<int> got;
  FdReply in{};
  std::thread receiver([&] {
    started = true;
    st = recv_with_fds(sp.b, &in, sizeof(in), &got);
  });
  while (!started) std::this_thread::yield();
  for (int i = 0; i < 20; ++i) {
    ::pthread_kill(receiver.native_handle(), SIGUSR1);
    std::this_thread::yield();
  }
  FdReply out{};
  out.fd_count = 1;
  ASSERT_TRUE(send_with_fds(sp.a, &out, 8, files.fds).ok());  // first half
  ASSERT_TRUE(send_with_fds(sp.a, reinterpret_cast<uint8_t*>(&out) + 8, 8, {}).ok());
  receiver.join();
  ::sigaction(SIGUSR1, &old, nullptr);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(in.fd_count, 1u);
  expect_same_files(files.fds, got);
  EXPECT_GT(g_signals.load(), 0);
  MemFds::close_all(&got);
}

}  // namespace
}  // namespace moepool
