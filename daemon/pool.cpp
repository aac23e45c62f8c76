#include "daemon/pool.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace moepool {
namespace {

constexpr uint64_t kDefaultSegmentBytes = 64ull << 20;
// Slot table entries: enough for 64 KiB experts filling the pool twice over (classes
// created and abandoned as models come and go), and never fewer than 16384.
uint64_t slot_capacity_for(uint64_t pool_bytes) {
  return std::max<uint64_t>(16384, 2 * pool_bytes / (64 << 10));
}

}  // namespace

Result<std::unique_ptr<Pool>> Pool::create(const Options& options) {
  uint64_t seg = options.segment_bytes ? options.segment_bytes
                                       : std::min(options.pool_bytes, kDefaultSegmentBytes);
  seg = seg / kSlotAlign * kSlotAlign;
  if (seg == 0 || options.pool_bytes < seg)
    return InvalidArgument("pool size " + std::to_string(options.pool_bytes) +
                           " is smaller than one segment (" + std::to_string(seg) + " bytes)");
  uint64_t count = options.pool_bytes / seg;  // never exceed the configured size

  std::unique_ptr<Pool> pool(new Pool());
  pool->segment_bytes_ = seg;
  pool->reserved_bytes_ = count * seg;
  void* range = mmap(nullptr, pool->reserved_bytes_, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (range == MAP_FAILED) return Status::FromErrno("reserve pool address range", errno);
  pool->base_ = static_cast<uint8_t*>(range);

  MOEPOOL_RETURN_IF_ERROR(pool->init_control(seg, count));

  double fault_ms = 0;
  bool want_lock = options.lock != "off";
  Status lock_status;
  for (uint64_t i = 0; i < count; ++i) {
    auto s = ShmSegment::create("moepool-seg" + std::to_string(i), seg, pool->base_ + i * seg);
    if (!s.ok()) return s.status();
    fault_ms += (*s)->prefault();
    if (want_lock && lock_status.ok()) lock_status = (*s)->lock();
    pool->segments_.push_back(std::move(s).value());
    pool->owner_.push_back(kNoClass);
  }
  if (want_lock && lock_status.ok()) lock_status = pool->control_->lock();
  if (options.lock == "on" && !lock_status.ok())
    return FailedPrecondition("pool.lock = \"on\" but locking the pool failed: " +
                              lock_status.message() +
                              " (raise RLIMIT_MEMLOCK or grant CAP_IPC_LOCK)");
  pool->locked_ = want_lock && lock_status.ok();
  pool->setup_note_ = std::to_string(count) + " segments of " + std::to_string(seg >> 10) +
                      " KiB, pre-faulted in " + std::to_string(static_cast<int>(fault_ms)) +
                      " ms, " +
                      (pool->locked_ ? std::string("locked in memory")
                       : want_lock   ? "NOT locked (" + lock_status.message() + ")"
                                     : std::string("not locked (pool.lock = off)"));
  return pool;
}

Status Pool::init_control(uint64_t seg, uint64_t count) {
  segment_count_ = static_cast<uint32_t>(count);
  reserved_bytes_ = count * seg;
  uint64_t capacity = slot_capacity_for(reserved_bytes_);
  auto control = ShmSegment::create("moepool-control", control_bytes_for(capacity), nullptr);
  if (!control.ok()) return control.status();
  control_ = std::move(control).value();
  auto* h = reinterpret_cast<ControlHeader*>(control_->data());
  std::memset(static_cast<void*>(h), 0, control_->bytes());
  h->magic = kControlMagic;
  h->version = kLayoutVersion;
  h->header_bytes = sizeof(ControlHeader);
  h->pool_bytes = reserved_bytes_;
  h->segment_bytes = seg;
  h->segment_count = static_cast<uint32_t>(count);
  h->max_classes = kMaxClasses;
  h->slot_capacity = capacity;
  h->slots_offset = (sizeof(ControlHeader) + 63) / 64 * 64;
  header_ = h;
  return Status::Ok();
}

Result<std::unique_ptr<Pool>> Pool::create_external(const Options& options,
                                                    std::vector<int> segment_fds,
                                                    std::string backend,
                                                    std::string device_uuid) {
  const uint64_t seg = options.segment_bytes;
  if (seg == 0 || seg % kSlotAlign != 0 || segment_fds.empty())
    return InvalidArgument("external pool: " + std::to_string(segment_fds.size()) +
                           " segments of " + std::to_string(seg) +
                           " bytes (want at least one, a multiple of 4096)");
  std::unique_ptr<Pool> pool(new Pool());
  pool->segment_bytes_ = seg;
  MOEPOOL_RETURN_IF_ERROR(pool->init_control(seg, segment_fds.size()));
  pool->external_fds_ = std::move(segment_fds);
  pool->contiguous_ = false;
  pool->owner_.assign(pool->segment_count_, kNoClass);
  pool->backend_ = std::move(backend);
  pool->device_uuid_ = std::move(device_uuid);
  Status lock_status;
  if (options.lock != "off") lock_status = pool->control_->lock();
  if (options.lock == "on" && !lock_status.ok())
    return FailedPrecondition("pool.lock = \"on\" but locking the control segment failed: " +
                              lock_status.message());
  pool->locked_ = options.lock != "off" && lock_status.ok();
  pool->setup_note_ = std::to_string(pool->segment_count_) + " " + pool->backend_ +
                      " segments of " + std::to_string(seg >> 10) +
                      " KiB (not mapped by the daemon), control segment " +
                      (pool->locked_ ? "locked" : "not locked");
  return pool;
}

Pool::~Pool() {
  segments_.clear();
  if (base_) munmap(base_, reserved_bytes_);
}

std::vector<int> Pool::segment_fds() const {
  if (!external_fds_.empty()) return external_fds_;
  std::vector<int> fds;
  for (const auto& s : segments_) fds.push_back(s->fd());
  return fds;
}

Result<uint32_t> Pool::class_for(uint64_t stride) {
  if (stride == 0 || stride % kSlotAlign != 0)
    return Internal("slot stride " + std::to_string(stride) + " is not a multiple of 4096");
  for (uint32_t c = 0; c < classes_.size(); ++c)
    if (classes_[c].stride == stride) return c;
  if (stride > segment_bytes_)
    return ResourceExhausted("an expert needs a " + std::to_string(stride) +
                             "-byte slot, larger than a pool segment (" +
                             std::to_string(segment_bytes_) + " bytes); raise pool.segment_size");
  if (classes_.size() >= kMaxClasses)
    return ResourceExhausted("all " + std::to_string(kMaxClasses) + " slot classes are in use");
  uint64_t n_slots = reserved_bytes_ / stride;
  uint64_t left = header_->slot_capacity - next_slot_;
  if (left == 0) return ResourceExhausted("the slot table is full");
  n_slots = std::min(n_slots, left);

  uint32_t c = static_cast<uint32_t>(classes_.size());
  ClassState cs;
  cs.stride = stride;
  cs.first_slot = next_slot_;
  cs.n_slots = n_slots;
  cs.usable.assign(n_slots, false);
  classes_.push_back(std::move(cs));
  next_slot_ += n_slots;

  SlotClass& sc = header_->classes[c];
  sc.stride = stride;
  sc.first_slot = classes_[c].first_slot;
  sc.n_slots = n_slots;
  sc.active.store(1, std::memory_order_release);  // pairs with readers' acquire load
  // Segments the class already owns cannot exist yet; slots appear as it grows.
  return c;
}

uint64_t Pool::capacity_slots(uint32_t c) const {
  const uint64_t s = classes_[c].stride;
  if (!contiguous_) return std::min(classes_[c].n_slots, segment_count_ * (segment_bytes_ / s));
  return std::min(classes_[c].n_slots, reserved_bytes_ / s);
}

uint32_t Pool::slot_class(uint64_t slot) const {
  for (uint32_t c = 0; c < classes_.size(); ++c)
    if (slot >= classes_[c].first_slot && slot < classes_[c].first_slot + classes_[c].n_slots)
      return c;
  return kNoClass;
}

void Pool::k_range(uint32_t c, uint32_t seg, uint64_t* lo, uint64_t* hi) const {
  uint64_t s = classes_[c].stride;
  uint64_t begin = uint64_t{seg} * segment_bytes_, end = begin + segment_bytes_;
  *lo = begin / s;                                   // first slot whose end is past begin
  *hi = std::min((end + s - 1) / s, classes_[c].n_slots);  // one past the last starting before end
}

bool Pool::slot_fits_owner(uint32_t c, uint64_t k) const {
  uint64_t s = classes_[c].stride;
  uint64_t begin = k * s, end = begin + s;
  if (end > reserved_bytes_) return false;
  // Separate memory objects (VRAM) cannot hold one slot across two of them.
  if (!contiguous_ && begin / segment_bytes_ != (end - 1) / segment_bytes_) return false;
  for (uint64_t seg = begin / segment_bytes_; seg <= (end - 1) / segment_bytes_; ++seg)
    if (owner_[seg] != c) return false;
  return true;
}

bool Pool::grow(uint32_t c) {
  auto it = std::find(owner_.begin(), owner_.end(), kNoClass);
  if (it == owner_.end()) return false;
  return assign_segment(static_cast<uint32_t>(it - owner_.begin()), c);
}

bool Pool::assign_segment(uint32_t seg, uint32_t c) {
  if (seg >= owner_.size() || owner_[seg] != kNoClass) return false;
  owner_[seg] = c;
  uint64_t lo, hi;
  k_range(c, seg, &lo, &hi);
  ClassState& cs = classes_[c];
  for (uint64_t k = lo; k < hi; ++k) {
    if (!cs.usable[k] && slot_fits_owner(c, k)) {
      cs.usable[k] = true;
      cs.free.insert(k);
    }
  }
  return true;
}

std::optional<uint64_t> Pool::take_free_slot(uint32_t c) {
  ClassState& cs = classes_[c];
  // A new segment may add no whole slot (a big stride straddling a neighbour owned by
  // another class); keep growing while free segments remain.
  while (cs.free.empty()) {
    if (!grow(c)) return std::nullopt;
  }
  uint64_t k = *cs.free.begin();
  cs.free.erase(cs.free.begin());
  return cs.first_slot + k;
}

void Pool::return_slot(uint64_t slot) {
  uint32_t c = slot_class(slot);
  classes_[c].free.insert(slot - classes_[c].first_slot);
}

std::vector<uint64_t> Pool::slots_touching(uint32_t seg) const {
  std::vector<uint64_t> out;
  uint32_t c = owner_[seg];
  if (c == kNoClass) return out;
  uint64_t lo, hi;
  k_range(c, seg, &lo, &hi);
  for (uint64_t k = lo; k < hi; ++k)
    if (classes_[c].usable[k]) out.push_back(classes_[c].first_slot + k);
  return out;
}

void Pool::release_segment(uint32_t seg) {
  uint32_t c = owner_[seg];
  if (c == kNoClass) return;
  uint64_t lo, hi;
  k_range(c, seg, &lo, &hi);
  ClassState& cs = classes_[c];
  for (uint64_t k = lo; k < hi; ++k) {
    if (cs.usable[k]) {
      cs.usable[k] = false;
      cs.free.erase(k);
    }
  }
  owner_[seg] = kNoClass;
}

uint64_t Pool::free_segments() const {
  return static_cast<uint64_t>(std::count(owner_.begin(), owner_.end(), kNoClass));
}

}  // namespace moepool
