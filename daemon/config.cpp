// moepoold configuration: embedded defaults, the TOML file (toml++) and the cross-field
// checks. toml++ exceptions are caught here; nothing throws out of this file.
#include "daemon/config.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <sstream>
#include <string_view>

#include "common/units.h"
#include "daemon/config_toml.h"

namespace moepool {
namespace {

using namespace config_detail;

namespace fs = std::filesystem;

constexpr size_t kMaxConfigFileBytes = 1 << 20;         // a config file is a few KiB
constexpr uint64_t kMinAutoSegmentBytes = 16ull << 20;  // auto never picks a smaller segment

// The schema: every key config/moepoold.toml documents, and nothing else.
const std::vector<SectionSpec>& schema() {
  static const std::vector<SectionSpec> kSchema = {
      {"daemon",
       {
           {"socket",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              auto v = get_path(o, n, "daemon.socket");
              if (!v.ok()) return v.status();
              c->socket_path = *v;
              return Status::Ok();
            }},
           {"socket_mode",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              int64_t mode = -1;
              if (const auto* i = n.as_integer()) {
                mode = i->get();  // TOML octal literal 0o660
              } else if (const auto* s = n.as_string()) {
                const std::string& t = s->get();
                bool octal = !t.empty() && t.size() <= 4 &&
                             t.find_first_not_of("01234567") == std::string::npos;
                if (!octal) {
                  return o.error(n.source(), "daemon.socket_mode: '" + t +
                                                 "' is not an octal mode like \"0660\"");
                }
                mode = std::strtol(t.c_str(), nullptr, 8);
              } else {
                return wrong_type(o, n, "daemon.socket_mode", "an octal string like \"0660\"");
              }
              if (mode < 0 || mode > 0777) {
                return o.error(n.source(), "daemon.socket_mode: must be between 0000 and 0777");
              }
              if ((mode & 0600) != 0600) {
                return o.error(
                    n.source(),
                    "daemon.socket_mode: the owner needs read and write (0600 at least)");
              }
              c->socket_mode = static_cast<uint32_t>(mode);
              return Status::Ok();
            }},
           {"state_dir",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              auto v = get_path(o, n, "daemon.state_dir");
              if (!v.ok()) return v.status();
              c->state_dir = *v;
              return Status::Ok();
            }},
           {"log_level",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              auto v =
                  get_choice(o, n, "daemon.log_level", {"trace", "debug", "info", "warn", "error"});
              if (!v.ok()) return v.status();
              c->log_level = *v;
              return Status::Ok();
            }},
       }},
      {"pool",
       {
           {"size",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              auto v = get_size(o, n, "pool.size");
              if (!v.ok()) return v.status();
              if (*v < kMinPoolBytes) {
                return o.error(n.source(),
                               "pool.size: " + format_bytes(*v) + " is below the minimum of 1 MiB");
              }
              if (*v % kSegmentAlign != 0) {
                return o.error(n.source(), "pool.size: must be a multiple of 4 KiB");
              }
              c->pool_bytes = *v;
              return Status::Ok();
            }},
           {"segment_size",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              auto v = get_size(o, n, "pool.segment_size");
              if (!v.ok()) return v.status();
              if (*v % kSegmentAlign != 0) {
                return o.error(n.source(),
                               "pool.segment_size: must be a multiple of 4 KiB (or 0 = auto)");
              }
              c->segment_bytes = *v;
              return Status::Ok();
            }},
           {"lock",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              auto v = get_choice(o, n, "pool.lock", {"auto", "on", "off"});
              if (!v.ok()) return v.status();
              c->lock_memory = *v;
              return Status::Ok();
            }},
           {"backend",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              auto v = get_choice(o, n, "pool.backend", {"host", "vulkan"});
              if (!v.ok()) return v.status();
              if (*v == "vulkan" && !have_vulkan_backend()) {
                return o.error(n.source(),
                               "pool.backend: \"vulkan\" but this moepoold was built without "
                               "Vulkan (rebuild with -DMOEPOOL_WITH_VULKAN=ON and libvulkan-dev)");
              }
              c->pool_backend = *v;
              return Status::Ok();
            }},
           {"vulkan_device",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              const auto* i = n.as_integer();
              if (i == nullptr) return wrong_type(o, n, "pool.vulkan_device", "an integer");
              if (i->get() < -1 || i->get() > kMaxVulkanDevice) {
                return o.error(n.source(), "pool.vulkan_device: " + std::to_string(i->get()) +
                                               " is out of range -1..63 (-1 = pick one)");
              }
              c->vulkan_device = static_cast<int32_t>(i->get());
              return Status::Ok();
            }},
       }},
      {"models",
       {
           {"roots",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              const auto* arr = n.as_array();
              if (arr == nullptr) return wrong_type(o, n, "models.roots", "an array of paths");
              // Resolved (realpath) by validate_config, after flags had their say: a
              // --model-root replaces this list, so a missing root here is not yet fatal.
              std::vector<std::string> roots, origins;
              for (const auto& el : *arr) {
                auto p = get_path(o, el, "models.roots[]");
                if (!p.ok()) return p.status();
                roots.push_back(*p);
                origins.push_back(o.at(el.source()));
              }
              c->model_root_origins = std::move(origins);
              c->model_roots = std::move(roots);
              return Status::Ok();
            }},
       }},
      {"policy",
       {
           {"name",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              auto v = get_choice(o, n, "policy.name", {"default", "lru"});
              if (!v.ok()) return v.status();
              c->policy_name = *v;
              return Status::Ok();
            }},
       }},
      {"admin",
       {
           {"uids",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              const auto* arr = n.as_array();
              if (arr == nullptr) return wrong_type(o, n, "admin.uids", "an array of integers");
              std::vector<uint32_t> uids;
              for (const auto& el : *arr) {
                const auto* i = el.as_integer();
                if (i == nullptr) return wrong_type(o, el, "admin.uids[]", "an integer uid");
                if (i->get() < 0 || i->get() >= 0xFFFFFFFFll) {
                  return o.error(el.source(),
                                 "admin.uids: " + std::to_string(i->get()) + " is not a valid uid");
                }
                uids.push_back(static_cast<uint32_t>(i->get()));
              }
              c->admin_uids = std::move(uids);
              return Status::Ok();
            }},
           {"groups",
            [](const Origin& o, const toml::node& n, DaemonConfig* c) -> Status {
              const auto* arr = n.as_array();
              if (arr == nullptr)
                return wrong_type(o, n, "admin.groups", "an array of group names");
              std::vector<std::string> groups;
              for (const auto& el : *arr) {
                auto g = get_string(o, el, "admin.groups[]");
                if (!g.ok()) return g.status();
                if (g->empty()) return o.error(el.source(), "admin.groups: empty group name");
                groups.push_back(*g);
              }
              c->admin_groups = std::move(groups);
              return Status::Ok();
            }},
       }},
  };
  return kSchema;
}

Status apply_table(const Origin& o, const toml::table& root, DaemonConfig* cfg) {
  std::vector<std::string_view> section_names;
  for (const auto& s : schema()) section_names.push_back(s.name);
  for (const auto& s : budget_schema()) section_names.push_back(s.name);
  for (const auto& s : io_schema()) section_names.push_back(s.name);
  section_names.push_back("quota");
  for (const auto& [skey, snode] : root) {
    if (skey.str() == "quota") {  // [quota."<model name>"]: keyed by model, see config_budget.cpp
      MOEPOOL_RETURN_IF_ERROR(apply_quota_section(o, snode, cfg));
      continue;
    }
    const SectionSpec* sec = nullptr;
    for (const auto& s : schema()) {
      if (s.name == skey.str()) sec = &s;
    }
    for (const auto& s : budget_schema()) {
      if (s.name == skey.str()) sec = &s;
    }
    for (const auto& s : io_schema()) {
      if (s.name == skey.str()) sec = &s;
    }
    if (sec == nullptr) {
      return o.error(skey.source(), "unknown section or key '" + std::string(skey.str()) + "'" +
                                        suggestion(skey.str(), section_names));
    }
    const auto* table = snode.as_table();
    if (table == nullptr) {
      return o.error(snode.source(), "'" + std::string(skey.str()) + "' must be a table [" +
                                         std::string(skey.str()) + "], got " +
                                         type_name(snode.type()));
    }
    std::vector<std::string_view> key_names;
    for (const auto& k : sec->keys) key_names.push_back(k.name);
    for (const auto& [key, node] : *table) {
      const KeySpec* spec = nullptr;
      for (const auto& k : sec->keys) {
        if (k.name == key.str()) spec = &k;
      }
      if (spec == nullptr) {
        return o.error(key.source(), "unknown key '" + std::string(sec->name) + "." +
                                         std::string(key.str()) + "'" +
                                         suggestion(key.str(), key_names));
      }
      MOEPOOL_RETURN_IF_ERROR(spec->set(o, node, cfg));
    }
  }
  return Status::Ok();
}

Result<std::string> read_small_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open config " + path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Status::FromErrno("stat config " + path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgument("config " + path + " is not a regular file");
  }
  std::string text;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return Status::FromErrno("read config " + path, err);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxConfigFileBytes) {
      ::close(fd);
      return InvalidArgument("config " + path + " is larger than 1 MiB");
    }
  }
  ::close(fd);
  return text;
}

std::string mode_string(uint32_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04o", mode);
  return buf;
}

}  // namespace

DaemonConfig default_config() {
  DaemonConfig c;
  std::string base;
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg != nullptr && xdg[0] == '/') {
    base = std::string(xdg) + "/moepool";
  } else {
    base = "/tmp/moepool-" + std::to_string(::getuid());
  }
  c.socket_path = base + "/moepool.sock";
  c.state_dir = base + "/state";
  return c;
}

Result<DaemonConfig> load_config_file(const std::string& path, DaemonConfig base) {
  auto text = read_small_file(path);
  if (!text.ok()) return text.status();
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  if (ec) abs = path;
  abs = abs.lexically_normal();
  Origin origin{path, abs.parent_path().string()};

  toml::table root;
#if TOML_EXCEPTIONS
  try {
    root = toml::parse(*text, path);
  } catch (const toml::parse_error& e) {
    return origin.error(e.source(), std::string(e.description()));
  } catch (const std::exception& e) {
    return InvalidArgument(path + ": " + e.what());
  }
#else
  toml::parse_result parsed = toml::parse(*text, path);
  if (!parsed) {
    return origin.error(parsed.error().source(), std::string(parsed.error().description()));
  }
  root = std::move(parsed).table();
#endif
  base.config_path = abs.string();
  MOEPOOL_RETURN_IF_ERROR(apply_table(origin, root, &base));
  return base;
}

bool have_vulkan_backend() {
#ifdef MOEPOOL_DAEMON_HAVE_VULKAN
  return true;
#else
  return false;
#endif
}

uint64_t effective_segment_bytes(const DaemonConfig& cfg) {
  if (cfg.segment_bytes != 0) return cfg.segment_bytes;
  uint64_t cap = std::min(cfg.pool_bytes, kAutoSegmentCapBytes) / kSegmentAlign * kSegmentAlign;
  // The largest multiple of 4 KiB at most `cap` that divides the pool (0 if none >= 16M).
  for (uint64_t s = cap; s >= kSegmentAlign; s -= kSegmentAlign) {
    if (s < kMinAutoSegmentBytes && s < cfg.pool_bytes) return 0;
    if (cfg.pool_bytes % s == 0) return s;
  }
  return 0;
}

Status validate_config(DaemonConfig* cfg) {
  std::error_code ec;
  // Paths: absolute and normal.
  if (cfg->socket_path.empty()) return InvalidArgument("daemon.socket: must not be empty");
  if (cfg->state_dir.empty()) return InvalidArgument("daemon.state_dir: must not be empty");
  cfg->socket_path = fs::absolute(cfg->socket_path, ec).lexically_normal().string();
  if (ec) return InvalidArgument("daemon.socket: " + ec.message());
  cfg->state_dir = fs::absolute(cfg->state_dir, ec).lexically_normal().string();
  if (ec) return InvalidArgument("daemon.state_dir: " + ec.message());
  if (cfg->socket_path.back() == '/') {
    return InvalidArgument("daemon.socket: " + cfg->socket_path + " names a directory");
  }
  // Both sockets (and their NUL) must fit in sockaddr_un.sun_path.
  constexpr size_t kSunPath = sizeof(sockaddr_un{}.sun_path);
  if (cfg->socket_path.size() + 4 + 1 > kSunPath) {
    return InvalidArgument("daemon.socket: " + cfg->socket_path + " is longer than " +
                           std::to_string(kSunPath - 5) +
                           " bytes (a Unix socket path, plus \".fds\", must fit in sun_path)");
  }
  if (cfg->socket_mode > 0777 || (cfg->socket_mode & 0600) != 0600) {
    return InvalidArgument("daemon.socket_mode: " + mode_string(cfg->socket_mode) +
                           " must be within 0600..0777 and give the owner read and write");
  }

  // Model roots: resolved, existing directories, no duplicates. Errors about a root from
  // the file name its line.
  std::vector<std::string> roots;
  for (size_t i = 0; i < cfg->model_roots.size(); ++i) {
    const std::string& r = cfg->model_roots[i];
    std::string where = i < cfg->model_root_origins.size() && !cfg->model_root_origins[i].empty()
                            ? cfg->model_root_origins[i] + ": "
                            : "";
    if (r.empty()) return InvalidArgument(where + "models.roots: empty path");
    char buf[PATH_MAX];
    if (::realpath(r.c_str(), buf) == nullptr) {
      Status s = Status::FromErrno("models.roots: " + r, errno);
      return where.empty() ? s : Status(s.code(), where + s.message());
    }
    struct stat st {};
    if (::stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
      return InvalidArgument(where + "models.roots: " + r + " is not a directory");
    }
    if (std::find(roots.begin(), roots.end(), buf) == roots.end()) roots.push_back(buf);
  }
  cfg->model_roots = std::move(roots);
  cfg->model_root_origins.clear();

  // Enumerations (flags bypass the file's checks).
  auto one_of = [](const std::string& v, std::initializer_list<std::string_view> allowed) {
    return std::find(allowed.begin(), allowed.end(), v) != allowed.end();
  };
  if (!one_of(cfg->log_level, {"trace", "debug", "info", "warn", "error"})) {
    return InvalidArgument("daemon.log_level: '" + cfg->log_level +
                           "' is not one of trace|debug|info|warn|error");
  }
  if (!one_of(cfg->lock_memory, {"auto", "on", "off"})) {
    return InvalidArgument("pool.lock: '" + cfg->lock_memory + "' is not one of auto|on|off");
  }
  if (!one_of(cfg->pool_backend, {"host", "vulkan"})) {
    return InvalidArgument("pool.backend: '" + cfg->pool_backend + "' is not one of host|vulkan");
  }
  if (cfg->pool_backend == "vulkan" && !have_vulkan_backend()) {
    return InvalidArgument("pool.backend: \"vulkan\" but this moepoold was built without Vulkan");
  }
  if (cfg->vulkan_device < -1 || cfg->vulkan_device > kMaxVulkanDevice) {
    return InvalidArgument("pool.vulkan_device: " + std::to_string(cfg->vulkan_device) +
                           " is out of range -1..63");
  }
  if (!one_of(cfg->policy_name, {"default", "lru"})) {
    return InvalidArgument("policy.name: '" + cfg->policy_name + "' is not one of default|lru");
  }
  MOEPOOL_RETURN_IF_ERROR(validate_io_config(*cfg));

  // Pool and segments: equal segments of whole pages that add up to the pool.
  if (cfg->pool_bytes < kMinPoolBytes) {
    return InvalidArgument("pool.size: " + format_bytes(cfg->pool_bytes) +
                           " is below the minimum of 1 MiB");
  }
  if (cfg->pool_bytes % kSegmentAlign != 0) {
    return InvalidArgument("pool.size: " + std::to_string(cfg->pool_bytes) +
                           " bytes is not a multiple of 4 KiB");
  }
  if (cfg->segment_bytes != 0) {
    if (cfg->segment_bytes % kSegmentAlign != 0) {
      return InvalidArgument("pool.segment_size: " + std::to_string(cfg->segment_bytes) +
                             " bytes is not a multiple of 4 KiB");
    }
    if (cfg->segment_bytes > cfg->pool_bytes || cfg->pool_bytes % cfg->segment_bytes != 0) {
      return InvalidArgument("pool.segment_size: " + format_bytes(cfg->segment_bytes) +
                             " does not divide pool.size " + format_bytes(cfg->pool_bytes) +
                             " into whole segments");
    }
  } else {
    uint64_t seg = effective_segment_bytes(*cfg);
    if (seg == 0) {
      return InvalidArgument("pool.size: " + format_bytes(cfg->pool_bytes) +
                             " cannot be split into equal segments of 16 MiB..64 MiB; use a "
                             "multiple of 16 MiB or set pool.segment_size");
    }
    cfg->segment_bytes = seg;
  }

  // Admin groups must exist, so a typo does not silently lock the admins out.
  for (const auto& g : cfg->admin_groups) {
    struct group grp {};
    struct group* found = nullptr;
    std::vector<char> buf(16384);
    int rc = ::getgrnam_r(g.c_str(), &grp, buf.data(), buf.size(), &found);
    if (rc != 0) return Status::FromErrno("admin.groups: getgrnam " + g, rc);
    if (found == nullptr) return InvalidArgument("admin.groups: no such group '" + g + "'");
  }
  return validate_budget_config(*cfg);
}

std::string describe_config(const DaemonConfig& cfg) {
  std::ostringstream out;
  auto list = [](const auto& v) {
    std::ostringstream s;
    s << "[";
    for (size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
    s << "]";
    return s.str();
  };
  out << "config file:        " << (cfg.config_path.empty() ? "(none, defaults)" : cfg.config_path)
      << "\n"
      << "daemon.socket:      " << cfg.socket_path << " (fds: " << cfg.socket_path << ".fds)\n"
      << "daemon.socket_mode: " << mode_string(cfg.socket_mode) << "\n"
      << "daemon.state_dir:   " << cfg.state_dir << "\n"
      << "daemon.log_level:   " << cfg.log_level << "\n"
      << "pool.size:          " << format_bytes(cfg.pool_bytes) << "\n"
      << "pool.segment_size:  "
      << (cfg.segment_bytes ? format_bytes(cfg.segment_bytes) : std::string("auto")) << "\n"
      << "pool.lock:          " << cfg.lock_memory << "\n"
      << "pool.backend:       " << cfg.pool_backend << "\n"
      << "pool.vulkan_device: " << cfg.vulkan_device << "\n"
      << "models.roots:       " << list(cfg.model_roots) << "\n"
      << describe_io_config(cfg)
      << "policy.name:        " << cfg.policy_name << "\n"
      << "admin.uids:         " << list(cfg.admin_uids) << "\n"
      << "admin.groups:       " << list(cfg.admin_groups) << "\n"
      << describe_budget_config(cfg);
  return out.str();
}

}  // namespace moepool
