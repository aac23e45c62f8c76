// The [io] section of moepoold's config (mode, direct, queue_depth, max_request_bytes,
// prefetch_bytes_in_flight) and the io.direct = auto decision. toml++ exceptions never
// leave daemon/config*.cpp (daemon/config.cpp catches them around the parse).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "common/units.h"
#include "daemon/config.h"
#include "daemon/config_toml.h"

namespace moepool {

const char* io_direct_name(IoDirect d) {
  switch (d) {
    case kIoDirectOff:
      return "off";
    case kIoDirectOn:
      return "on";
    case kIoDirectAuto:
      return "auto";
  }
  return "auto";
}

DirectChoice choose_direct_reads(IoDirect setting, uint64_t file_bytes, uint64_t available_bytes) {
  if (setting == kIoDirectOn) return {true, "io.direct = on"};
  if (setting == kIoDirectOff) return {false, "io.direct = off"};
  if (file_bytes <= available_bytes)
    return {false, "files " + format_bytes(file_bytes) + " fit in " +
                       format_bytes(available_bytes) + " available"};
  return {true, "files " + format_bytes(file_bytes) + " > " + format_bytes(available_bytes) +
                    " available"};
}

uint64_t effective_prefetch_bytes(const DaemonConfig& cfg) {
  if (cfg.prefetch_bytes_in_flight) return cfg.prefetch_bytes_in_flight;
  return std::max<uint64_t>(uint64_t{cfg.queue_depth} * cfg.max_request_bytes / 2, 4096);
}

Result<uint64_t> mem_available_bytes(const std::string& meminfo_path) {
  int fd = ::open(meminfo_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open " + meminfo_path, errno);
  char buf[8192];
  size_t len = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf + len, sizeof buf - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return Status::FromErrno("read " + meminfo_path, err);
    }
    if (n == 0 || (len += static_cast<size_t>(n)) == sizeof buf - 1) break;
  }
  ::close(fd);
  buf[len] = '\0';
  const char* at = std::strstr(buf, "MemAvailable:");
  uint64_t kib = 0;
  if (at == nullptr || std::sscanf(at, "MemAvailable: %" SCNu64 " kB", &kib) != 1)
    return InvalidArgument(meminfo_path + ": no \"MemAvailable: <n> kB\" line");
  return kib * 1024;
}

namespace config_detail {
namespace {

// A size key of [io] that must be a multiple of 4096 within [lo, hi]; "auto" (when
// allow_auto) and 0 mean auto.
Result<uint64_t> get_io_size(const Origin& o, const toml::node& n, const std::string& key,
                             uint64_t lo, uint64_t hi, bool allow_auto) {
  if (allow_auto) {
    if (const auto* s = n.as_string(); s != nullptr && s->get() == "auto") return uint64_t{0};
  }
  auto v = get_size(o, n, key);
  if (!v.ok()) return v.status();
  if (allow_auto && *v == 0) return uint64_t{0};
  if (*v < lo || *v > hi)
    return o.error(n.source(), key + ": " + format_bytes(*v) + " is out of range " +
                                   format_bytes(lo) + ".." + format_bytes(hi) +
                                   (allow_auto ? " (or \"auto\")" : ""));
  if (*v % 4096 != 0) return o.error(n.source(), key + ": must be a multiple of 4 KiB");
  return *v;
}

}  // namespace

const std::vector<SectionSpec>& io_schema() {
  static const std::vector<SectionSpec> kSchema = {
      {"io",
       {
           {"mode",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              auto v = get_choice(o, n, "io.mode", {"auto", "io_uring", "pread"});
              if (!v.ok()) return v.status();
              c->io_mode = *v;
              return Status::Ok();
            }},
           {"direct",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              if (const auto* b = n.as_boolean()) {  // true/false: the old spelling of on/off
                c->io_direct = b->get() ? kIoDirectOn : kIoDirectOff;
                return Status::Ok();
              }
              if (n.as_string() == nullptr)
                return wrong_type(o, n, "io.direct", "\"auto\", \"on\" or \"off\"");
              auto v = get_choice(o, n, "io.direct", {"auto", "on", "off"});
              if (!v.ok()) return v.status();
              c->io_direct = *v == "on" ? kIoDirectOn : *v == "off" ? kIoDirectOff : kIoDirectAuto;
              return Status::Ok();
            }},
           {"queue_depth",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              const auto* i = n.as_integer();
              if (i == nullptr) return wrong_type(o, n, "io.queue_depth", "an integer");
              if (i->get() < 1 || i->get() > kMaxQueueDepth) {
                return o.error(n.source(), "io.queue_depth: " + std::to_string(i->get()) +
                                               " is out of range 1..4096");
              }
              c->queue_depth = static_cast<uint32_t>(i->get());
              return Status::Ok();
            }},
           {"max_request_bytes",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              auto v = get_io_size(o, n, "io.max_request_bytes", 4096, kMaxMaxRequestBytes,
                                   /*allow_auto=*/false);
              if (!v.ok()) return v.status();
              c->max_request_bytes = *v;
              return Status::Ok();
            }},
           {"prefetch_bytes_in_flight",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              auto v = get_io_size(o, n, "io.prefetch_bytes_in_flight", 4096, 1ull << 40,
                                   /*allow_auto=*/true);
              if (!v.ok()) return v.status();
              c->prefetch_bytes_in_flight = *v;
              return Status::Ok();
            }},
       }},
  };
  return kSchema;
}

Status validate_io_config(const DaemonConfig& cfg) {
  if (cfg.io_mode != "auto" && cfg.io_mode != "io_uring" && cfg.io_mode != "pread")
    return InvalidArgument("io.mode: '" + cfg.io_mode + "' is not one of auto|io_uring|pread");
  if (cfg.io_direct != kIoDirectAuto && cfg.io_direct != kIoDirectOn &&
      cfg.io_direct != kIoDirectOff)
    return InvalidArgument("io.direct: " + std::to_string(int{cfg.io_direct}) +
                           " is not one of auto|on|off");
  if (cfg.queue_depth < 1 || cfg.queue_depth > kMaxQueueDepth)
    return InvalidArgument("io.queue_depth: " + std::to_string(cfg.queue_depth) +
                           " is out of range 1..4096");
  if (cfg.max_request_bytes < 4096 || cfg.max_request_bytes > kMaxMaxRequestBytes ||
      cfg.max_request_bytes % 4096 != 0)
    return InvalidArgument("io.max_request_bytes: " + std::to_string(cfg.max_request_bytes) +
                           " bytes is not a multiple of 4 KiB within 4 KiB..64 MiB");
  if (cfg.prefetch_bytes_in_flight % 4096 != 0)
    return InvalidArgument("io.prefetch_bytes_in_flight: " +
                           std::to_string(cfg.prefetch_bytes_in_flight) +
                           " bytes is not a multiple of 4 KiB (or 0 = auto)");
  return Status::Ok();
}

std::string describe_io_config(const DaemonConfig& cfg) {
  std::ostringstream out;
  out << "io.mode:            " << cfg.io_mode << "\n"
      << "io.direct:          " << io_direct_name(cfg.io_direct) << "\n"
      << "io.queue_depth:     " << cfg.queue_depth << "\n"
      << "io.max_request_bytes: " << format_bytes(cfg.max_request_bytes) << "\n"
      << "io.prefetch_bytes_in_flight: " << format_bytes(effective_prefetch_bytes(cfg))
      << (cfg.prefetch_bytes_in_flight ? "" : " (auto: queue_depth * max_request_bytes / 2)")
      << "\n";
  return out.str();
}

}  // namespace config_detail
}  // namespace moepool
