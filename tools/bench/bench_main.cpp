// moepool-bench: forks N worker processes that replay a routing trace against moepoold
// through libmoepool (see bench_options.h for the flags), then reports.
// The parent loads the trace and the model's catalog, forks the workers before any gRPC
// state exists, then connects itself only to read the daemon's counters around the run.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <optional>
#include <vector>

#include "common/catalog.h"
#include "common/synthetic_trace.h"
#include "common/trace.h"
#include "moepool/client.h"
#include "tools/bench/bench_options.h"
#include "tools/bench/io_bench.h"
#include "tools/bench/kernels_bench.h"
#include "tools/bench/report.h"
#include "tools/bench/worker.h"
#include "tools/bench/worker_result.h"

namespace moepool::bench {
namespace {

// Checks that the model has a MoE layer for every trace layer, with enough experts.
Status check_shape(const Catalog& catalog, const TraceShape& shape, const std::string& model,
                   const std::string& trace) {
  const auto& layers = catalog.layers();
  if (layers.size() < shape.layers)
    return InvalidArgument("model " + model + " has " + std::to_string(layers.size()) +
                           " MoE layers, but trace " + trace + " has " +
                           std::to_string(shape.layers) +
                           " (trace layer l drives the model's l-th MoE layer)");
  for (uint32_t l = 0; l < shape.layers; ++l) {
    if (layers[l].n_experts < shape.experts)
      return InvalidArgument("model " + model + ": MoE layer " + std::to_string(l) + " (blk." +
                             std::to_string(layers[l].layer) + ") has " +
                             std::to_string(layers[l].n_experts) + " experts, but trace " + trace +
                             " has " + std::to_string(shape.experts));
  }
  return Status::Ok();
}

// Returns the model's counters from `stats`, or nullptr if the daemon does not list it.
const ModelStats* find_model(const PoolStats& stats, uint64_t id) {
  for (const ModelStats& m : stats.models)
    if (m.model_id == id) return &m;
  return nullptr;
}

DaemonDelta delta_of(const Result<PoolStats>& before, const Result<PoolStats>& after, uint64_t id) {
  DaemonDelta d;
  if (!before.ok() || !after.ok()) {
    d.note = "stats: " + (before.ok() ? after.status() : before.status()).to_string();
    return d;
  }
  const ModelStats* a = find_model(*after, id);
  if (!a) {
    d.note = "the daemon's stats do not list this model";
    return d;
  }
  ModelStats zero;
  const ModelStats* b = find_model(*before, id);
  if (!b) b = &zero;
  d.valid = true;
  d.bytes_read = a->bytes_read - b->bytes_read;
  d.hits = a->hits - b->hits;
  d.misses = a->misses - b->misses;
  d.evictions = a->evictions - b->evictions;
  d.read_errors = a->read_errors - b->read_errors;
  return d;
}

int fail(const Status& st) {
  fprintf(stderr, "moepool-bench: %s\n", st.to_string().c_str());
  return 1;
}

struct Child {
  pid_t pid = -1;
  int result_fd = -1;
  bool reported = false;
};

int run(const BenchOptions& o) {
  // The trace (or the synthetic spec) and the model's catalog, before any fork.
  std::optional<Trace> trace;
  SyntheticTraceSpec spec;
  TraceShape shape;
  std::string trace_desc;
  if (!o.trace_prefix.empty()) {
    auto t = Trace::load(o.trace_prefix);
    if (!t.ok()) return fail(t.status());
    trace.emplace(std::move(t).value());
    shape = trace->shape();
    trace_desc = trace->name() + " (real routing, " + std::to_string(shape.steps) + " steps, " +
                 std::to_string(trace->sequences().size()) + " sequences; worker i starts at " +
                 "sequence " + std::to_string(o.first_sequence) + "+i)";
  } else {
    auto s = parse_synthetic_spec(o.synthetic_spec);
    if (!s.ok()) return fail(s.status());
    spec = *s;
    spec.steps = o.steps;
    shape = {spec.layers, spec.experts, spec.top_k, spec.steps};
    trace_desc = "synthetic " + to_string(spec) + " (worker i uses seed+i)";
  }
  auto catalog = Catalog::open(o.model);
  if (!catalog.ok()) return fail(catalog.status());
  Status shape_ok =
      check_shape(*catalog, shape, o.model, trace ? trace->name() : "synthetic:" + to_string(spec));
  if (!shape_ok.ok()) return fail(shape_ok);

  // Fork the workers; each gets its own result pipe, all share the start pipe.
  signal(SIGPIPE, SIG_IGN);
  fflush(stdout);
  fflush(stderr);
  int go[2];
  if (pipe2(go, O_CLOEXEC) != 0) return fail(Status::FromErrno("pipe", errno));
  std::vector<Child> children(o.workers);
  for (uint32_t i = 0; i < o.workers; ++i) {
    int res[2];
    if (pipe2(res, O_CLOEXEC) != 0) return fail(Status::FromErrno("pipe", errno));
    pid_t pid = fork();
    if (pid < 0) return fail(Status::FromErrno("fork", errno));
    if (pid == 0) {
      ::close(go[1]);
      ::close(res[0]);
      for (uint32_t j = 0; j < i; ++j) ::close(children[j].result_fd);
      WorkerPlan plan;
      plan.index = i;
      plan.options = &o;
      plan.catalog = &*catalog;
      plan.trace = trace ? &*trace : nullptr;
      plan.synthetic = spec;
      int code = run_worker(plan, go[0], res[1]);
      _exit(code);  // no atexit handlers or static destructors of the parent's state
    }
    ::close(res[1]);
    children[i] = {pid, res[0], false};
  }
  ::close(go[0]);

  BenchReport report;
  report.options = &o;
  report.model_name = catalog->name();
  report.trace_desc = trace_desc;
  report.workers.resize(o.workers);

  // The parent's own session, only for the daemon's counters.
  std::unique_ptr<Client> client;
  uint64_t model_id = catalog->model_id();
  auto c = Client::connect(o.socket, "moepool-bench");
  if (c.ok()) {
    client = std::move(c).value();
    auto info = client->open_model(o.model);
    if (info.ok())
      model_id = info->id;
    else
      report.errors.push_back("open_model " + o.model + ": " + info.status().to_string());
  } else {
    report.errors.push_back("connect " + o.socket + ": " + c.status().to_string());
  }

  // Wait until every worker is connected with the model open, then start them together.
  bool all_ready = report.errors.empty();
  for (uint32_t i = 0; i < o.workers; ++i) {
    WorkerMessage kind;
    WorkerResult& r = report.workers[i];
    r.index = i;
    Status st = read_message(children[i].result_fd, &kind, &r);
    if (!st.ok()) {
      r.error = st;
      children[i].reported = true;
      all_ready = false;
    } else if (kind == WorkerMessage::kResult) {
      children[i].reported = true;
      all_ready = false;
    }
  }
  Result<PoolStats> before = Internal("not read");
  if (all_ready) before = client->stats();
  const auto start = std::chrono::steady_clock::now();
  if (all_ready) {
    std::vector<char> go_bytes(o.workers, 'g');
    if (::write(go[1], go_bytes.data(), go_bytes.size()) != static_cast<ssize_t>(o.workers))
      report.errors.push_back(Status::FromErrno("start the workers", errno).to_string());
  }
  ::close(go[1]);  // without the start bytes, EOF tells the workers to give up

  for (uint32_t i = 0; i < o.workers; ++i) {
    if (children[i].reported) continue;
    WorkerMessage kind;
    WorkerResult& r = report.workers[i];
    Status st = read_message(children[i].result_fd, &kind, &r);
    if (!st.ok())
      r.error = st;
    else if (kind != WorkerMessage::kResult)
      r.error = Internal("a second ready message");
    r.index = i;
  }
  report.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (uint32_t i = 0; i < o.workers; ++i) {
    ::close(children[i].result_fd);
    int wstatus = 0;
    while (waitpid(children[i].pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(wstatus) && report.workers[i].error.ok())
      report.workers[i].error = Internal("killed by signal " + std::to_string(WTERMSIG(wstatus)) +
                                         " (" + strsignal(WTERMSIG(wstatus)) + ")");
  }
  if (all_ready)
    report.daemon = delta_of(before, client->stats(), model_id);
  else
    report.daemon.note = "the run did not start";
  if (!all_ready) report.wall_seconds = 0;

  if (o.json) {
    print_json(stdout, report);
    print_human(stderr, report);
  } else {
    print_human(stdout, report);
  }
  return report.ok() ? 0 : 1;
}

}  // namespace
}  // namespace moepool::bench

int main(int argc, char** argv) {
  // `moepool-bench kernels ...`: the kernel throughput subcommand (kernels_bench.h).
  if (argc >= 2 && strcmp(argv[1], "kernels") == 0)
    return moepool::bench::run_kernels_bench(argc - 1, argv + 1);
  // `moepool-bench io ...`: the I/O engine's read rate on a file (io_bench.h).
  if (argc >= 2 && strcmp(argv[1], "io") == 0)
    return moepool::bench::run_io_bench(argc - 1, argv + 1);
  auto parsed = moepool::bench::parse_bench_options(argc, argv);
  if (parsed.exit_now) return parsed.exit_code;
  return moepool::bench::run(parsed.options);
}
