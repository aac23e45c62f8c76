#include "admin_channel.h"

#include "common/daemon_socket.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace moepool::ctl {
namespace {

constexpr auto kConnectTimeout = std::chrono::seconds(5);
constexpr auto kCallTimeout = std::chrono::seconds(30);

}  // namespace

std::string default_socket_path() {
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg != nullptr && xdg[0] == '/') return std::string(xdg) + "/moepool/moepool.sock";
  return "/tmp/moepool-" + std::to_string(::getuid()) + "/moepool.sock";
}

Result<std::unique_ptr<AdminChannel>> AdminChannel::connect(const std::string& socket_path) {
  MOEPOOL_RETURN_IF_ERROR(probe_daemon_socket(socket_path));
  auto ch = std::make_unique<AdminChannel>();
  ch->path_ = socket_path;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  ch->channel_ =
      grpc::CreateCustomChannel("unix:" + socket_path, grpc::InsecureChannelCredentials(), args);
  if (!ch->channel_->WaitForConnected(std::chrono::system_clock::now() + kConnectTimeout)) {
    return daemon_unreachable(socket_path,
                       "the socket accepts connections but gRPC did not connect "
                       "within 5 s (is it moepoold?)");
  }
  ch->stub_ = v1::Admin::NewStub(ch->channel_);
  return ch;
}

std::unique_ptr<grpc::ClientContext> AdminChannel::context() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  return ctx;
}

Status AdminChannel::error(const grpc::Status& st, const char* rpc) const {
  std::string msg = st.error_message().empty() ? "no message" : st.error_message();
  switch (st.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return daemon_unreachable(path_, std::string(rpc) + ": " + msg);
    case grpc::StatusCode::PERMISSION_DENIED:
      return PermissionDenied(std::string(rpc) + ": " + msg);
    case grpc::StatusCode::NOT_FOUND:
      return NotFound(std::string(rpc) + ": " + msg);
    case grpc::StatusCode::INVALID_ARGUMENT:
      return InvalidArgument(std::string(rpc) + ": " + msg);
    default:
      return Internal(std::string(rpc) + ": " + msg);
  }
}

}  // namespace moepool::ctl
