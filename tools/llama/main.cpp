// moepool-llama: loads a GGUF with the prebuilt llama.cpp, optionally serves its routed
// experts from moepoold (--moepool SOCKET), decodes N tokens greedily from a prompt of
// token ids and prints the tokens, tokens/s and, with moepool, the hit rate.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "llama.h"
#include "moepool/client.h"
#include "moepool/llama_adapter.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

bool g_verbose = false;

void log_sink(ggml_log_level level, const char* text, void*) {
  if (g_verbose || level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

std::vector<llama_token> parse_tokens(const std::string& s, std::string* error) {
  std::vector<llama_token> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    std::string item = s.substr(i, j == std::string::npos ? std::string::npos : j - i);
    char* end = nullptr;
    long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 0 || v > INT32_MAX) {
      *error = "--prompt: '" + item + "' is not a token id";
      return {};
    }
    out.push_back(static_cast<llama_token>(v));
    if (j == std::string::npos) break;
    i = j + 1;
  }
  return out;
}

// A persistent CPU threadpool, as llama.cpp's own tools attach one. Without it ggml starts
// and joins its threads for every graph computation, and the adapter splits each MoE
// layer's graph into several (ggml-cpu's functions come from the dynamically loaded
// backend, hence the proc-address lookup).
class CpuThreadpool {
 public:
  CpuThreadpool(int n_threads, int poll) {
    ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    ggml_backend_reg_t reg = dev ? ggml_backend_dev_backend_reg(dev) : nullptr;
    if (!reg) return;
    auto* make = reinterpret_cast<decltype(ggml_threadpool_new)*>(
        ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new"));
    free_ = reinterpret_cast<decltype(ggml_threadpool_free)*>(
        ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free"));
    if (!make || !free_) return;
    ggml_threadpool_params p = ggml_threadpool_params_default(n_threads);
    p.poll = static_cast<uint32_t>(poll);
    pool_ = make(&p);
  }
  ~CpuThreadpool() {
    if (pool_) free_(pool_);
  }
  ggml_threadpool_t get() const { return pool_; }

 private:
  ggml_threadpool_t pool_ = nullptr;
  decltype(ggml_threadpool_free)* free_ = nullptr;
};

struct Options {
  std::string model, socket, prompt = "1,2,3,4,5,6,7,8", dump_logits;
  int n_predict = 32, threads = 0, ctx = 0, ubatch = 512, poll = 50;
  bool json = false;
};

int run(const Options& o) {
  std::string perr;
  std::vector<llama_token> prompt = parse_tokens(o.prompt, &perr);
  if (prompt.empty()) {
    fprintf(stderr, "moepool-llama: %s\n", perr.empty() ? "--prompt is empty" : perr.c_str());
    return 2;
  }
  // Closed at the end of run(); opened first so a bad path fails before anything loads.
  FILE* dump = nullptr;
  if (!o.dump_logits.empty() && !(dump = fopen(o.dump_logits.c_str(), "wb"))) {
    fprintf(stderr, "moepool-llama: cannot write %s: %s\n", o.dump_logits.c_str(), strerror(errno));
    return 1;
  }
  llama_log_set(log_sink, nullptr);
  moepool::load_llama_backends();
  llama_backend_init();

  std::unique_ptr<moepool::Client> client;
  std::unique_ptr<moepool::LlamaAdapter> adapter;
  if (!o.socket.empty()) {
    auto c = moepool::Client::connect(o.socket, "moepool-llama");
    if (!c.ok()) {
      fprintf(stderr, "moepool-llama: %s\n", c.status().message().c_str());
      return 1;
    }
    client = std::move(*c);
    auto a = moepool::LlamaAdapter::create(client.get(), o.model);
    if (!a.ok()) {
      fprintf(stderr, "moepool-llama: %s\n", a.status().message().c_str());
      return 1;
    }
    adapter = std::move(*a);
  }

  llama_model_params mp = llama_model_default_params();
  mp.load_mode = LLAMA_LOAD_MODE_MMAP;
  mp.n_gpu_layers = 0;
  mp.use_extra_bufts = false;  // stock runs compare bit for bit with moepool runs
  if (adapter) adapter->configure(&mp);
  auto t_load = Clock::now();
  llama_model* model = llama_model_load_from_file(o.model.c_str(), mp);
  if (!model) {
    fprintf(stderr, "moepool-llama: llama.cpp could not load %s (run with -v for its log)\n",
                o.model.c_str());
    return 1;
  }
  double load_s = seconds_since(t_load);
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  for (llama_token t : prompt)
    if (t >= n_vocab) {
      fprintf(stderr, "moepool-llama: prompt token %d is out of range: the vocabulary has %d\n", t,
              n_vocab);
      llama_model_free(model);
      return 2;
    }

  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = o.ctx > 0 ? o.ctx : static_cast<uint32_t>(prompt.size() + o.n_predict + 16);
  cp.n_batch = std::max<uint32_t>(prompt.size(), 1);
  cp.n_ubatch = o.ubatch;
  int threads = o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency());
  cp.n_threads = cp.n_threads_batch = threads;
  cp.no_perf = true;
  if (adapter) adapter->configure(&cp);
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    fprintf(stderr, "moepool-llama: llama.cpp could not create a context\n");
    llama_model_free(model);
    return 1;
  }
  if (adapter) adapter->attach(ctx);
  // Declared after ctx's creation, destroyed before llama_free (see the end of run()).
  auto threadpool = std::make_unique<CpuThreadpool>(threads, o.poll);
  if (threadpool->get()) llama_attach_threadpool(ctx, threadpool->get(), threadpool->get());

  int rc = 0;
  std::vector<llama_token> out;
  std::vector<llama_token> next = prompt;
  double prefill_s = 0, decode_s = 0;
  for (int step = 0; step <= o.n_predict; ++step) {
    auto t0 = Clock::now();
    int st = llama_decode(ctx, llama_batch_get_one(next.data(), static_cast<int32_t>(next.size())));
    (step == 0 ? prefill_s : decode_s) += seconds_since(t0);
    if (st != 0 || (adapter && !adapter->status().ok())) {
      fprintf(stderr, "moepool-llama: decode step %d failed: %s\n", step,
              adapter && !adapter->status().ok() ? adapter->status().message().c_str()
                                                 : ("llama_decode returned " + std::to_string(st)).c_str());
      rc = 1;
      break;
    }
    const float* logits = llama_get_logits_ith(ctx, -1);
    if (dump && fwrite(logits, sizeof(float), n_vocab, dump) != static_cast<size_t>(n_vocab)) {
      fprintf(stderr, "moepool-llama: writing %s failed\n", o.dump_logits.c_str());
      rc = 1;
      break;
    }
    if (step == o.n_predict) break;
    llama_token best = 0;
    for (int i = 1; i < n_vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    out.push_back(best);
    next.assign(1, best);
  }
  if (dump && fclose(dump) != 0 && rc == 0) {
    fprintf(stderr, "moepool-llama: writing %s failed\n", o.dump_logits.c_str());
    rc = 1;
  }

  // Steps after the prompt: each decodes one token (the last one only for its logits).
  double tps = decode_s > 0 ? o.n_predict / decode_s : 0;
  std::string toks;
  for (size_t i = 0; i < out.size(); ++i) toks += (i ? " " : "") + std::to_string(out[i]);
  if (o.json) {
    printf("{\"tokens\":[%s],\"load_s\":%.6f,\"prefill_s\":%.6f,\"decode_s\":%.6f,"
           "\"tokens_per_s\":%.3f,\"threads\":%d,\"n_ubatch\":%u",
           [&] { std::string s = toks; for (char& c : s) if (c == ' ') c = ','; return s; }().c_str(),
           load_s, prefill_s, decode_s, tps, threads, llama_n_ubatch(ctx));
    if (adapter) {
      const auto& s = adapter->stats();
      printf(",\"moepool\":{\"layers\":%lu,\"experts\":%lu,\"hits\":%lu,\"busy_retries\":%lu,"
             "\"acquire_ns\":%lu,\"releases\":%lu,\"release_ns\":%lu,\"callback_ns\":%lu}",
             s.layers, s.experts, s.hits, s.busy_retries, s.acquire_ns, s.releases, s.release_ns,
             s.callback_ns);
    }
    printf("}\n");
  } else {
    printf("model:   %s (%d-token vocabulary), loaded in %.2f s\n", o.model.c_str(), n_vocab, load_s);
    printf("prompt:  %zu tokens in %.3f s (n_ubatch %u, %d threads)\n", prompt.size(), prefill_s,
           llama_n_ubatch(ctx), threads);
    printf("tokens:  %s\n", toks.c_str());
    printf("decode:  %d tokens in %.3f s = %.2f tokens/s\n", o.n_predict, decode_s, tps);
    if (adapter) {
      const auto& s = adapter->stats();
      const double layers = static_cast<double>(std::max<uint64_t>(s.layers, 1));
      printf("moepool: hit rate %.1f%% (%lu of %lu experts leased over %lu layer evaluations)\n"
             "         per layer: %.1f us in the eval callback, of which %.1f us acquiring; "
             "%lu separate releases, %lu busy retries\n",
             s.experts ? 100.0 * s.hits / s.experts : 0.0, s.hits, s.experts, s.layers,
             s.callback_ns / 1e3 / layers, s.acquire_ns / 1e3 / layers, s.releases,
             s.busy_retries);
    }
  }
  llama_detach_threadpool(ctx);
  threadpool.reset();
  llama_free(ctx);
  llama_model_free(model);
  adapter.reset();
  client.reset();
  llama_backend_free();
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "moepool-llama: greedy decoding with the prebuilt llama.cpp (v0.5.0), optionally with the "
      "model's routed experts served from moepoold's shared pool (--moepool)."};
  app.add_option("model", o.model, "GGUF model file (with --moepool: under a daemon model root)")
      ->required();
  app.add_option("--moepool", o.socket, "moepoold socket; serve routed experts from its pool");
  app.add_option("--prompt", o.prompt, "Prompt as comma-separated token ids")
      ->capture_default_str();
  app.add_option("-n,--n-predict", o.n_predict, "Tokens to generate")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("-t,--threads", o.threads, "CPU threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--poll", o.poll,
                 "How hard idle CPU threads poll for work between graph computations, 0-100 "
                 "(llama.cpp's default)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100));
  app.add_option("--ctx", o.ctx, "Context length (default: prompt + n + 16)")
      ->check(CLI::Range(0, 1 << 24));
  app.add_option("--ubatch", o.ubatch,
                 "Largest physical batch; with --moepool capped so a layer's distinct experts "
                 "fit the pool")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("--dump-logits", o.dump_logits,
                 "Write the logits after every decode call (prompt, then each token) as raw "
                 "little-endian float32 rows of n_vocab");
  app.add_flag("--json", o.json, "Print one JSON object instead of text");
  app.add_flag("-v,--verbose", g_verbose, "Show llama.cpp's log");
  CLI11_PARSE(app, argc, argv);
  return run(o);
}
