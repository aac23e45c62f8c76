// `moepool-bench io`: the command line (CLI11, its exceptions stay here) and the run.
#include "tools/bench/io_bench.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "common/units.h"
#include "daemon/io_engine.h"
#include "tools/bench/io_bench_plan.h"

namespace moepool::bench {
namespace {

constexpr uint64_t kMaxFixedBuffer = 1ULL << 30;  // io_uring's limit on one fixed buffer

struct Parsed {
  IoBenchOptions options;
  bool exit_now = false;
  int exit_code = 0;
};

// A CLI11 validator-transform for byte sizes ("4M", "64KiB", "4096").
std::string size_arg(std::string& text) {
  auto v = parse_size(text);
  if (!v.ok()) return v.status().message();
  text = std::to_string(*v);
  return {};
}

Parsed parse(int argc, char** argv) {
  Parsed out;
  IoBenchOptions& o = out.options;
  CLI::App app{
      "moepool-bench io: read a file through moepoold's own I/O engine (IoEngine: io_uring, "
      "or a pread thread pool where io_uring is refused; O_DIRECT with --direct) and report "
      "the rate. The engine gets queue_depth = --qd and max_request_bytes = --block (larger "
      "requests are split into --block reads). Destination memory is page-aligned, "
      "pre-faulted, one slot per request in flight, and registered with the engine "
      "(IoEngine::register_buffers: io_uring fixed buffers) unless --no-fixed-buffers. "
      "--qd requests are kept in flight: the next is submitted when one completes.\n"
      "Patterns: seq = consecutive --block reads from --offset (default 0), wrapping to 0 at "
      "the end of the file, until --bytes; rand = --block reads at --block-aligned offsets drawn by a "
      "seeded hash (--seed), until --bytes; --extents FILE = one request per 'offset "
      "length' line of FILE (decimal or 0x hex; '#' comments), in that order, one pass "
      "(e.g. one token's routed experts from --print-extents).\n"
      "Sizes take binary suffixes (4M = 4 MiB, 64K, 1G). Timing runs from the first submit "
      "to the last completion; the page cache is not dropped (do that yourself). Prints the "
      "engine's path and counters, then exactly one last line 'read <bytes> bytes in "
      "<seconds> s, <x.xx> GB/s' (GB = 1e9 bytes).\n"
      "--print-extents MODEL writes such an extents list to stdout instead: --top-k distinct "
      "experts (seeded) of each of the first --layers MoE layers, their gate, up and down "
      "byte ranges in the GGUF file.\n"
      "Exit status: 0 when every read succeeded, 1 on a runtime error (a file that cannot "
      "be opened, a malformed extents line, a failed read), 2 on a usage error.",
      "moepool-bench io"};
  app.add_option("--file", o.file, "file to read (a GGUF model or any file)");
  app.add_option("--block", o.block,
                 "bytes per read (seq, rand) and the engine's max_request_bytes; a multiple "
                 "of 4096 with --direct")
      ->transform(CLI::Validator(size_arg, "SIZE"))
      ->capture_default_str();
  app.add_option("--qd", o.queue_depth, "requests in flight (the engine's queue_depth), >= 1")
      ->capture_default_str();
  app.add_option("--pattern", o.pattern, "seq or rand (ignored with --extents)")
      ->check(CLI::IsMember({"seq", "rand"}))
      ->capture_default_str();
  app.add_flag("--direct", o.direct, "O_DIRECT reads (the file's filesystem must allow it)");
  app.add_option("--bytes", o.bytes,
                 "bytes to read (seq, rand); default the file size; not with --extents")
      ->transform(CLI::Validator(size_arg, "SIZE"));
  app.add_option("--offset", o.offset,
                 "seq: first offset (a multiple of 4096 with --direct); reads wrap to 0 at "
                 "the end of the file")
      ->transform(CLI::Validator(size_arg, "SIZE"))
      ->capture_default_str();
  app.add_option("--extents", o.extents_path, "read the 'offset length' lines of FILE");
  app.add_option("--seed", o.seed, "seed of rand offsets and of --print-extents' experts")
      ->capture_default_str();
  app.add_option("--mode", o.mode, "engine mode: auto (io_uring, else pread), io_uring, pread")
      ->check(CLI::IsMember({"auto", "io_uring", "pread"}))
      ->capture_default_str();
  bool no_fixed_buffers = false, no_fixed_files = false;
  app.add_flag("--no-fixed-buffers", no_fixed_buffers,
               "do not register the destination memory with the engine");
  app.add_flag("--no-fixed-files", no_fixed_files,
               "do not let the engine register the file (io_uring fixed files)");
  app.add_option("--print-extents", o.print_extents_model,
                 "print the expert extents of MODEL (see above) and exit; no reading");
  app.add_option("--layers", o.layers,
                 "with --print-extents: the first N MoE layers (0: all)")
      ->capture_default_str();
  app.add_option("--top-k", o.top_k, "with --print-extents: experts per layer")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
    o.fixed_buffers = !no_fixed_buffers;
    o.fixed_files = !no_fixed_files;
    if (!o.print_extents_model.empty()) {
      if (!o.file.empty() || !o.extents_path.empty())
        throw CLI::ValidationError("--print-extents reads nothing: give no --file or --extents");
      if (o.top_k == 0) throw CLI::ValidationError("--top-k must be >= 1");
    } else {
      if (o.file.empty()) throw CLI::ValidationError("--file is required");
      if (o.queue_depth == 0) throw CLI::ValidationError("--qd must be >= 1 (got 0)");
      if (o.block == 0) throw CLI::ValidationError("--block must be > 0");
      if (o.direct && o.block % kIoAlign != 0)
        throw CLI::ValidationError("--block " + std::to_string(o.block) +
                                   " is not a multiple of 4096, which --direct needs");
      if (o.direct && o.offset % kIoAlign != 0)
        throw CLI::ValidationError("--offset " + std::to_string(o.offset) +
                                   " is not a multiple of 4096, which --direct needs");
      if (app.count("--offset") > 0 && (o.pattern != "seq" || !o.extents_path.empty()))
        throw CLI::ValidationError("--offset applies to --pattern seq only");
      if (!o.extents_path.empty() && app.count("--bytes") > 0)
        throw CLI::ValidationError("--bytes does not apply to --extents (one pass of the list)");
      if (app.count("--bytes") > 0 && o.bytes == 0)
        throw CLI::ValidationError("--bytes must be > 0");
    }
  } catch (const CLI::ParseError& e) {
    out.exit_now = true;
    out.exit_code = app.exit(e);
    if (out.exit_code != 0) out.exit_code = 2;
  }
  return out;
}

int fail(const Status& st) {
  fprintf(stderr, "moepool-bench io: %s\n", st.to_string().c_str());
  return 1;
}

// Page-aligned anonymous memory, unmapped on destruction.
struct Mapping {
  uint8_t* data = nullptr;
  uint64_t bytes = 0;
  ~Mapping() {
    if (data) munmap(data, bytes);
  }
};

// The run's shared state: which read goes next, what finished. Guarded by mu.
struct Run {
  const IoReadPlan* plan = nullptr;
  IoEngine* engine = nullptr;
  const ModelFile* file = nullptr;
  uint8_t* slots = nullptr;
  uint64_t slot_bytes = 0;
  std::mutex mu;
  std::condition_variable cv;
  uint64_t next = 0;       // index of the next read to submit
  uint64_t in_flight = 0;  // requests submitted, not yet done
  uint64_t bytes_done = 0;
  Status error;
};

void submit(Run* run, uint32_t slot, uint64_t i);

// Called on the engine thread when the request in `slot` finished.
void on_done(Run* run, uint32_t slot, uint64_t bytes, Status st) {
  bool more = false;
  uint64_t i = 0;
  {
    std::lock_guard<std::mutex> lock(run->mu);
    --run->in_flight;
    if (st.ok())
      run->bytes_done += bytes;
    else if (run->error.ok())
      run->error = st;
    more = run->error.ok() && run->next < run->plan->count();
    if (more) {
      i = run->next++;
      ++run->in_flight;
    }
    if (!more && run->in_flight == 0) run->cv.notify_all();
  }
  if (more) submit(run, slot, i);
}

// Submits read plan->at(i) into `slot`; the caller has taken i and counted it in in_flight.
void submit(Run* run, uint32_t slot, uint64_t i) {
  const IoRange r = run->plan->at(i);
  ReadRequest req;
  ReadSpan span;
  span.file = run->file;
  span.offset = r.offset;
  span.bytes = r.bytes;
  span.region = run->slots + uint64_t{slot} * run->slot_bytes;
  req.spans.push_back(span);
  req.priority = ReadPriority::kDemand;
  req.done = [run, slot, bytes = r.bytes](Status st) { on_done(run, slot, bytes, std::move(st)); };
  run->engine->submit(std::move(req));
}

int run_reads(const IoBenchOptions& o) {
  auto file = open_model_file(o.file);
  if (!file.ok()) return fail(file.status());
  struct Closer {
    ModelFile* f;
    ~Closer() { close_model_file(f); }
  } closer{&*file};
  if (o.direct && file->direct_fd < 0)
    return fail(InvalidArgument("--direct: the filesystem of " + o.file +
                                " refuses O_DIRECT (e.g. tmpfs)"));
  struct stat sb {};
  if (fstat(file->buffered_fd, &sb) != 0) return fail(Status::FromErrno("stat " + o.file, errno));
  const uint64_t size = sb.st_size;

  Result<IoReadPlan> plan = InvalidArgument("no plan");
  if (!o.extents_path.empty())
    plan = IoReadPlan::extents(o.extents_path, size);
  else if (o.pattern == "seq")
    plan = IoReadPlan::sequential(size, o.block, o.bytes ? o.bytes : size, o.offset);
  else
    plan = IoReadPlan::random(size, o.block, o.bytes ? o.bytes : size, o.seed);
  if (!plan.ok()) return fail(plan.status());

  IoEngine::Options eo;
  eo.mode = o.mode;
  eo.direct = o.direct;
  eo.queue_depth = o.queue_depth;
  eo.max_request_bytes = o.block;
  eo.register_files = o.fixed_files;
  eo.register_buffers = o.fixed_buffers;
  auto engine = IoEngine::create(eo);
  if (!engine.ok()) return fail(engine.status());

  // One slot per request in flight, page-aligned and pre-faulted.
  const uint32_t slots = static_cast<uint32_t>(std::min<uint64_t>(o.queue_depth, plan->count()));
  Mapping mem;
  mem.bytes = uint64_t{slots} * plan->max_region_bytes();
  void* p = mmap(nullptr, mem.bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return fail(Status::FromErrno("mmap " + std::to_string(mem.bytes) + " bytes", errno));
  mem.data = static_cast<uint8_t*>(p);
  memset(mem.data, 0, mem.bytes);

  std::string fixed = "not asked (--no-fixed-buffers)";
  if (o.fixed_buffers) {
    // Regions of whole slots, each at most 1 GiB (io_uring's limit on one fixed buffer).
    std::vector<std::pair<uint8_t*, uint64_t>> regions;
    const uint64_t per = std::max<uint64_t>(1, kMaxFixedBuffer / plan->max_region_bytes());
    for (uint64_t s = 0; s < slots; s += per) {
      const uint64_t n = std::min<uint64_t>(per, slots - s);
      regions.emplace_back(mem.data + s * plan->max_region_bytes(), n * plan->max_region_bytes());
    }
    Status st = (*engine)->register_buffers(regions);
    fixed = st.ok() ? std::to_string(regions.size()) + " region(s) given"
                    : "register_buffers failed (" + st.to_string() + "), plain reads";
  }

  Run run;
  run.plan = &*plan;
  run.engine = engine->get();
  run.file = &*file;
  run.slots = mem.data;
  run.slot_bytes = plan->max_region_bytes();
  const auto start = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(run.mu);
    run.in_flight = slots;
    run.next = slots;
  }
  for (uint32_t s = 0; s < slots; ++s) submit(&run, s, s);
  {
    std::unique_lock<std::mutex> lock(run.mu);
    run.cv.wait(lock, [&] {
      return run.in_flight == 0 && (!run.error.ok() || run.next >= plan->count());
    });
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const IoEngine::Stats stats = (*engine)->stats();
  (*engine)->stop();

  printf("file %s (%llu bytes), %s, block %llu, qd %u\n", o.file.c_str(),
         static_cast<unsigned long long>(size), plan->describe().c_str(),
         static_cast<unsigned long long>(o.block), o.queue_depth);
  printf("engine %s, queue depth %u, peak in flight %u, reads %llu, requests %llu, "
         "p50 %llu us, p99 %llu us, retries %llu, short reads %llu, moves %llu\n",
         (*engine)->mode_name().c_str(), stats.queue_depth, stats.in_flight_peak,
         static_cast<unsigned long long>(stats.reads),
         static_cast<unsigned long long>(stats.demand.requests),
         static_cast<unsigned long long>(stats.demand.latency_p50_us),
         static_cast<unsigned long long>(stats.demand.latency_p99_us),
         static_cast<unsigned long long>(stats.retries),
         static_cast<unsigned long long>(stats.short_reads),
         static_cast<unsigned long long>(stats.moves));
  printf("fixed buffers: %s; engine reports %u fixed buffer(s), fixed files %s\n",
         fixed.c_str(), stats.fixed_buffers, stats.fixed_files ? "yes" : "no");
  if (!run.error.ok()) {
    fflush(stdout);
    return fail(run.error);
  }
  printf("read %llu bytes in %.3f s, %.2f GB/s\n",
         static_cast<unsigned long long>(run.bytes_done), seconds,
         seconds > 0 ? run.bytes_done / seconds / 1e9 : 0.0);
  return 0;
}

}  // namespace

int run_io_bench(int argc, char** argv) {
  Parsed parsed = parse(argc, argv);
  if (parsed.exit_now) return parsed.exit_code;
  const IoBenchOptions& o = parsed.options;
  if (!o.print_extents_model.empty()) {
    Status st = print_expert_extents(o.print_extents_model, o.layers, o.top_k, o.seed, stdout);
    return st.ok() ? 0 : fail(st);
  }
  return run_reads(o);
}

}  // namespace moepool::bench
