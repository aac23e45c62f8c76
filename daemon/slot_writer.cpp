#include "daemon/slot_writer.h"

namespace moepool {

ReadRequest to_read_request(const SlotRead& read, uint8_t* slot_region,
                            std::function<void(Status)> done) {
  ReadRequest req;
  req.priority = read.priority;
  req.cancelled = read.cancelled;
  req.spans.reserve(read.spans.size());
  for (const SlotSpan& s : read.spans)
    req.spans.push_back(ReadSpan{s.file, s.offset, s.bytes, slot_region + s.region_offset, s.data_at});
  req.done = std::move(done);
  return req;
}

void HostSlotWriter::write(SlotRead read) {
  uint8_t* slot = base_ + read.pool_offset;
  std::function<void(Status)> done = std::move(read.done);
  io_->submit(to_read_request(read, slot, std::move(done)));
}

}  // namespace moepool
