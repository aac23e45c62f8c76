#include "daemon/popularity_store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace moepool {
namespace {

constexpr std::string_view kMagic = "moepool-popularity";
constexpr size_t kMaxFileBytes = 64u << 20;  // 2^20 experts' lines and more
constexpr double kLoadDecay = 0.5;           // a saved run's counts weigh half at the next

std::string hex16(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

Result<std::string> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Status::FromErrno("open " + path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<uint64_t>(st.st_size) > kMaxFileBytes) {
    ::close(fd);
    return InvalidArgument(path + " is not a regular file of at most 64 MiB");
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return Status::FromErrno("read " + path, err);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  text.resize(got);
  return text;
}

Status write_all(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("write " + path, errno);
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Writes `data` to `path` so that a reader sees the old file or the new one, whole.
Status write_atomically(const std::string& dir, const std::string& path, const std::string& data) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0) return Status::FromErrno("create " + tmp, errno);
  Status st = write_all(fd, data, tmp);
  if (st.ok() && ::fsync(fd) != 0) st = Status::FromErrno("fsync " + tmp, errno);
  if (::close(fd) != 0 && st.ok()) st = Status::FromErrno("close " + tmp, errno);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0)
    st = Status::FromErrno("rename " + tmp + " to " + path, errno);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Status::FromErrno("open " + dir, errno);
  if (::fsync(dfd) != 0) st = Status::FromErrno("fsync " + dir, errno);
  ::close(dfd);
  return st;
}

template <typename T>
bool parse_uint(std::string_view s, T* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

std::vector<std::string_view> split(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

std::string encode_popularity(uint64_t model_id, const std::string& model_name,
                              std::vector<PopularityEntry> entries) {
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.layer != b.layer ? a.layer < b.layer : a.expert < b.expert;
  });
  std::string name = model_name;
  std::replace(name.begin(), name.end(), '\n', ' ');
  std::ostringstream out;
  out << kMagic << " " << kPopularityFormatVersion << "\n"
      << "model " << hex16(model_id) << "\n"
      << "name " << name << "\n";
  char buf[96];
  for (const PopularityEntry& e : entries) {
    std::snprintf(buf, sizeof buf, "%u %u %.6g\n", e.layer, e.expert, e.count);
    out << buf;
  }
  out << "end " << entries.size() << "\n";
  return out.str();
}

Result<std::vector<PopularityEntry>> decode_popularity(std::string_view text, uint64_t model_id) {
  std::vector<PopularityEntry> out;
  size_t pos = 0, line_no = 0;
  bool ended = false;
  auto bad = [&](const std::string& why) {
    return InvalidArgument("line " + std::to_string(line_no) + ": " + why);
  };
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) {
      ++line_no;
      return bad("no newline at the end (file cut off?)");
    }
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (ended) return bad("text after the 'end' line");
    auto f = split(line);
    if (line_no == 1) {
      uint32_t version = 0;
      if (f.size() != 2 || f[0] != kMagic) return bad("not a moepool popularity file");
      if (!parse_uint(f[1], &version) || version != kPopularityFormatVersion)
        return bad("format version '" + std::string(f[1]) + "' is not " +
                   std::to_string(kPopularityFormatVersion));
      continue;
    }
    if (line_no == 2) {
      if (f.size() != 2 || f[0] != "model") return bad("expected 'model <id>'");
      if (f[1] != hex16(model_id))
        return bad("the file is for model " + std::string(f[1]) + ", not " + hex16(model_id));
      continue;
    }
    if (line_no == 3) {
      if (line.substr(0, 5) != "name " && line != "name") return bad("expected 'name <name>'");
      continue;
    }
    if (!f.empty() && f[0] == "end") {
      size_t n = 0;
      if (f.size() != 2 || !parse_uint(f[1], &n)) return bad("expected 'end <entries>'");
      if (n != out.size())
        return bad("'end' says " + std::to_string(n) + " entries, the file has " +
                   std::to_string(out.size()));
      ended = true;
      continue;
    }
    PopularityEntry e;
    if (f.size() != 3) return bad("expected 'layer expert count'");
    if (!parse_uint(f[0], &e.layer)) return bad("layer '" + std::string(f[0]) + "' is not a number");
    if (!parse_uint(f[1], &e.expert))
      return bad("expert '" + std::string(f[1]) + "' is not a number");
    std::string c(f[2]);
    char* end = nullptr;
    e.count = std::strtod(c.c_str(), &end);
    if (end != c.c_str() + c.size() || !std::isfinite(e.count) || e.count < 0)
      return bad("count '" + c + "' is not a number >= 0");
    out.push_back(e);
  }
  if (line_no < 3) return bad("the header is incomplete");
  if (!ended) return InvalidArgument("no 'end' line (file cut off?)");
  return out;
}

PopularityStore::PopularityStore(std::string dir) : dir_(std::move(dir)) {}

std::string PopularityStore::path_for(uint64_t model_id) const {
  return dir_ + "/" + hex16(model_id) + ".popularity";
}

void PopularityStore::count(uint64_t model_id, const std::string& model_name, uint32_t layer,
                            const std::vector<uint32_t>& experts) {
  std::lock_guard<std::mutex> lock(mu_);
  ModelCounts& m = models_[model_id];
  if (m.name.empty()) m.name = model_name;
  for (uint32_t e : experts) m.counts[uint64_t{layer} << 32 | e] += 1;
  m.dirty = true;
}

std::vector<PopularityEntry> PopularityStore::entries_of(const ModelCounts& m) {
  std::vector<PopularityEntry> out;
  out.reserve(m.counts.size());
  for (const auto& [k, c] : m.counts)
    out.push_back({static_cast<uint32_t>(k >> 32), static_cast<uint32_t>(k), c});
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.layer != b.layer ? a.layer < b.layer : a.expert < b.expert;
  });
  return out;
}

PopularityStore::Opened PopularityStore::open_model(uint64_t model_id,
                                                    const std::string& model_name) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(model_id);
    if (it != models_.end() && it->second.loaded) return {false, entries_of(it->second)};
  }
  // Read outside the lock: Acquire's count() must not wait for the disk.
  std::string path = path_for(model_id);
  std::vector<PopularityEntry> saved;
  auto text = read_file(path);
  if (!text.ok()) {
    if (text.status().code() != Code::kNotFound)
      spdlog::warn("popularity of model {} ({}): {}; ignoring it", model_name, hex16(model_id),
                   text.status().message());
  } else {
    auto decoded = decode_popularity(*text, model_id);
    if (decoded.ok())
      saved = std::move(decoded).value();
    else
      spdlog::warn("popularity file {}: {}; ignoring it (the next save replaces it)", path,
                   decoded.status().message());
  }
  std::lock_guard<std::mutex> lock(mu_);
  ModelCounts& m = models_[model_id];
  if (m.name.empty()) m.name = model_name;
  Opened out;
  if (!m.loaded) {  // another open may have raced this one
    m.loaded = true;
    out.first = true;
    for (const PopularityEntry& e : saved)
      m.counts[uint64_t{e.layer} << 32 | e.expert] += e.count * kLoadDecay;
  }
  out.entries = entries_of(m);
  return out;
}

Status PopularityStore::save_all() {
  struct ToWrite {
    uint64_t id;
    std::string name;
    std::vector<PopularityEntry> entries;
  };
  std::vector<ToWrite> to_write;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, m] : models_) {
      // Not yet merged with its saved file: writing now would drop that history.
      if (!m.dirty || !m.loaded) continue;
      m.dirty = false;
      to_write.push_back({id, m.name, entries_of(m)});
    }
  }
  Status first = Status::Ok();
  for (ToWrite& w : to_write) {
    Status st = write_atomically(dir_, path_for(w.id), encode_popularity(w.id, w.name, w.entries));
    if (st.ok()) continue;
    spdlog::warn("cannot save the popularity of model {}: {}", w.name, st.message());
    std::lock_guard<std::mutex> lock(mu_);
    models_[w.id].dirty = true;  // try again at the next save
    if (first.ok()) first = st;
  }
  return first;
}

}  // namespace moepool
