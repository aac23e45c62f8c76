/* The C API (moepool/moepool.h) against a real moepoold, from plain C11.
 *
 * Usage: c_api_test <bindir>   (bindir holds moepoold and moepool-synth; exit 77 = skip)
 * Starts moepoold on a private socket with a 32 MiB pool and a temp model root, writes a
 * small synthetic model, then checks every byte the pool serves against the file and the
 * errors the API reports. Prints "N passed, M failed"; exits 1 if anything failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "moepool/moepool.h"

static atomic_int g_passed, g_failed; /* CHECK runs on several threads */

#define CHECK(cond, ...)                                                  \
  do {                                                                    \
    if (cond) {                                                           \
      g_passed++;                                                         \
    } else {                                                              \
      g_failed++;                                                         \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
      fprintf(stderr, __VA_ARGS__);                                       \
      fputc('\n', stderr);                                                \
    }                                                                     \
  } while (0)

/* Checks that a call failed with a message containing `needle`, then frees it. */
#define CHECK_ERROR(err, needle)                                                        \
  do {                                                                                  \
    CHECK((err) != NULL && strlen(err) > 0, "expected an error mentioning '%s'", needle); \
    if ((err) != NULL) {                                                                \
      CHECK(strstr((err), (needle)) != NULL, "error '%s' lacks '%s'", (err), (needle)); \
      moepool_free(err);                                                                \
      (err) = NULL;                                                                     \
    }                                                                                   \
  } while (0)

#define CHECK_OK(err, what)                                            \
  do {                                                                 \
    CHECK((err) == NULL, "%s: %s", (what), (err) ? (err) : "");        \
    if ((err) != NULL) {                                               \
      moepool_free(err);                                               \
      (err) = NULL;                                                    \
    }                                                                  \
  } while (0)

static char g_bindir[1024];
static char g_root[256];    /* model root, socket and state dir */
static char g_outside[256]; /* a second dir, outside the model root */
static char g_socket[512];
static char g_model[512];
static pid_t g_daemon = -1;

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Runs argv[0] with argv and waits; returns its exit status, or -1. */
static int run_tool(char* const argv[]) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
    execv(argv[0], argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int synth_model(const char* out) {
  char tool[1100];
  snprintf(tool, sizeof(tool), "%s/moepool-synth", g_bindir);
  char* argv[] = {tool,     "--out",   (char*)out, "--layers", "2",      "--experts", "8",
                  "--embd", "256",     "--ffn",    "512",      "--type", "q8_0",      NULL};
  return run_tool(argv);
}

static void start_daemon(void) {
  char tool[1100], state[300], log[300];
  snprintf(tool, sizeof(tool), "%s/moepoold", g_bindir);
  snprintf(state, sizeof(state), "%s/state", g_root);
  snprintf(log, sizeof(log), "%s/moepoold.log", g_root);
  g_daemon = fork();
  if (g_daemon == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a test that crashed */
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    char* argv[] = {tool,      "--socket",    g_socket,  "--pool-size", "32M",
                    "--model-root", g_root,   "--state-dir", state,     NULL};
    execv(tool, argv);
    fprintf(stderr, "exec %s: %s\n", tool, strerror(errno));
    _exit(127);
  }
}

/* Returns 1 while the daemon process still runs. */
static int daemon_alive(void) {
  if (g_daemon <= 0) return 0;
  int status;
  pid_t r = waitpid(g_daemon, &status, WNOHANG);
  if (r == g_daemon) {
    fprintf(stderr, "moepoold exited (status %d)\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    g_daemon = -1;
    return 0;
  }
  return 1;
}

static void stop_daemon(void) {
  if (g_daemon <= 0) return;
  kill(g_daemon, SIGTERM);
  for (int i = 0; i < 200; i++) { /* up to ~10 s for a clean exit, then SIGKILL */
    if (waitpid(g_daemon, NULL, WNOHANG) == g_daemon) {
      g_daemon = -1;
      return;
    }
    sleep_ms(50);
  }
  kill(g_daemon, SIGKILL);
  waitpid(g_daemon, NULL, 0);
  g_daemon = -1;
}

static void print_daemon_log(void) {
  char path[300], line[1024];
  snprintf(path, sizeof(path), "%s/moepoold.log", g_root);
  FILE* f = fopen(path, "r");
  if (f == NULL) return;
  fprintf(stderr, "---- moepoold log ----\n");
  while (fgets(line, sizeof(line), f) != NULL) fputs(line, stderr);
  fprintf(stderr, "----------------------\n");
  fclose(f);
}

static int remove_entry(const char* path, const struct stat* st, int flag, struct FTW* ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

static void remove_tree(const char* dir) {
  if (dir[0] != '\0') nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Connects, polling while the daemon starts (bounded; fails if the daemon dies). */
static moepool_client_t* connect_when_ready(const char* name) {
  char* err = NULL;
  for (int attempt = 0; attempt < 300; attempt++) {
    moepool_client_t* c = moepool_client_connect(g_socket, name, &err);
    if (c != NULL) return c;
    if (!daemon_alive()) break;
    moepool_free(err);
    err = NULL;
    sleep_ms(50);
  }
  fprintf(stderr, "could not connect to %s: %s\n", g_socket, err ? err : "daemon exited");
  moepool_free(err);
  return NULL;
}

/* Compares every projection of every lease with the model file. Returns mismatches. */
static int verify_leases(const moepool_client_t* c, const moepool_leases_t* leases,
                         uint32_t layer) {
  int bad = 0;
  const uint8_t* base = moepool_client_pool_base(c);
  uint64_t pool_bytes = moepool_client_pool_bytes(c);
  for (size_t i = 0; i < moepool_leases_count(leases); i++) {
    uint32_t expert = moepool_leases_expert(leases, i);
    const uint8_t* slot = moepool_leases_slot(leases, i);
    uint64_t stride = moepool_leases_stride(leases, i);
    CHECK(slot == base + moepool_leases_slot_index(leases, i) * stride,
          "lease %zu: slot is not pool_base + slot_index * stride", i);
    CHECK(slot >= base && slot + stride <= base + pool_bytes, "lease %zu: slot outside the pool", i);
    size_t np = moepool_leases_n_projections(leases, i);
    CHECK(np >= 2 && np <= 3, "lease %zu has %zu projections", i, np);
    for (size_t p = 0; p < np; p++) {
      const uint8_t* data = moepool_leases_projection_data(leases, i, p);
      uint64_t bytes = moepool_leases_projection_bytes(leases, i, p);
      CHECK(data == slot + moepool_leases_projection_offset(leases, i, p),
            "lease %zu proj %zu: data != slot + offset", i, p);
      char* err = NULL;
      char* file = NULL;
      uint64_t off = 0, want_bytes = 0;
      int rc = moepool_debug_expert_extent(g_model, layer, expert, (uint32_t)p, &file, &off,
                                           &want_bytes, &err);
      CHECK(rc == 0, "extent of layer %u expert %u proj %zu: %s", layer, expert, p,
            err ? err : "");
      moepool_free(err);
      if (rc != 0) {
        bad++;
        continue;
      }
      CHECK(bytes == want_bytes, "expert %u proj %zu: %llu bytes, file has %llu", expert, p,
            (unsigned long long)bytes, (unsigned long long)want_bytes);
      uint8_t* buf = malloc(want_bytes);
      int fd = open(file, O_RDONLY);
      ssize_t got = (fd >= 0 && buf != NULL) ? pread(fd, buf, want_bytes, (off_t)off) : -1;
      CHECK(got == (ssize_t)want_bytes, "pread %s: %zd of %llu bytes", file, got,
            (unsigned long long)want_bytes);
      if (got == (ssize_t)want_bytes && bytes == want_bytes) {
        int same = memcmp(buf, data, want_bytes) == 0;
        CHECK(same, "layer %u expert %u proj %zu: pool bytes differ from %s at %llu", layer,
              expert, p, file, (unsigned long long)off);
        if (!same) bad++;
      } else {
        bad++;
      }
      if (fd >= 0) close(fd);
      free(buf);
      moepool_free(file);
    }
  }
  return bad;
}

static void test_model_and_leases(moepool_client_t* c) {
  char* err = NULL;
  moepool_model_t* m = moepool_model_open(c, g_model, &err);
  CHECK_OK(err, "moepool_model_open");
  if (m == NULL) return;
  CHECK(moepool_model_id(m) != 0, "model id is 0");
  CHECK(moepool_model_n_moe_layers(m) == 2, "%u MoE layers", moepool_model_n_moe_layers(m));
  CHECK(moepool_model_layer_n_experts(m, 0) == 8, "%u experts", moepool_model_layer_n_experts(m, 0));
  CHECK(moepool_model_layer_n_experts(m, 99) == 0, "out-of-range layer accessor not 0");
  uint64_t sum = 0;
  for (uint32_t p = 0; p < moepool_model_layer_n_projections(m, 0); p++) {
    int kind = moepool_model_projection_kind(m, 0, p);
    CHECK(kind >= MOEPOOL_PROJECTION_GATE && kind <= MOEPOOL_PROJECTION_GATE_UP, "kind %d", kind);
    CHECK(moepool_model_projection_ne(m, 0, p, 2) == 8, "ne[2] of projection %u", p);
    sum += moepool_model_projection_expert_bytes(m, 0, p);
  }
  CHECK(sum == moepool_model_layer_expert_bytes(m, 0), "projection bytes do not add up");
  uint32_t layer = moepool_model_layer_index(m, 0);
  uint64_t id = moepool_model_id(m);

  const uint32_t experts[3] = {0, 3, 5};
  moepool_leases_t* l = moepool_acquire(c, id, layer, experts, 3, &err);
  CHECK_OK(err, "moepool_acquire {0,3,5}");
  if (l != NULL) {
    CHECK(moepool_leases_count(l) == 3, "%zu leases", moepool_leases_count(l));
    for (size_t i = 0; i < moepool_leases_count(l); i++)
      CHECK(moepool_leases_expert(l, i) == experts[i], "lease %zu is expert %u", i,
            moepool_leases_expert(l, i));
    CHECK(verify_leases(c, l, layer) == 0, "pool bytes differ from the file");

    /* The same experts again: resident now, so hits. */
    moepool_leases_t* again = moepool_acquire(c, id, layer, experts, 3, &err);
    CHECK_OK(err, "second moepool_acquire");
    for (size_t i = 0; again != NULL && i < 3; i++) {
      CHECK(moepool_leases_hit(again, i) == 1, "second acquire of expert %u is not a hit",
            experts[i]);
      CHECK(moepool_leases_slot(again, i) == moepool_leases_slot(l, i), "expert moved");
    }
    moepool_leases_release(c, again, &err);
    CHECK_OK(err, "release second leases");
    moepool_leases_destroy(again);

    moepool_leases_release(c, l, &err);
    CHECK_OK(err, "moepool_leases_release");
    moepool_leases_release(c, l, &err);
    CHECK_ERROR(err, "already released");
    moepool_leases_destroy(l);
  }

  /* Layer 1 too, to read a second tensor set. */
  uint32_t layer1 = moepool_model_layer_index(m, 1);
  const uint32_t last[2] = {7, 1};
  l = moepool_acquire(c, id, layer1, last, 2, &err);
  CHECK_OK(err, "moepool_acquire layer 1 {7,1}");
  if (l != NULL) {
    CHECK(verify_leases(c, l, layer1) == 0, "pool bytes of layer 1 differ from the file");
    moepool_leases_release(c, l, &err);
    CHECK_OK(err, "release layer 1");
    moepool_leases_destroy(l);
  }

  /* Errors: they name the problem and change nothing. */
  const uint32_t out_of_range[2] = {1, 8};
  l = moepool_acquire(c, id, layer, out_of_range, 2, &err);
  CHECK(l == NULL, "acquire of expert 8 of 8 succeeded");
  CHECK_ERROR(err, "invalid argument");
  l = moepool_acquire(c, id, 999, experts, 1, &err);
  CHECK(l == NULL, "acquire of layer 999 succeeded");
  CHECK_ERROR(err, "999");
  l = moepool_acquire(c, id ^ 0x5a5a5a5aULL, layer, experts, 1, &err);
  CHECK(l == NULL, "acquire of an unknown model succeeded");
  CHECK_ERROR(err, "not found");

  uint32_t queued = moepool_prefetch(c, id, layer1, experts, 2, &err);
  CHECK_OK(err, "moepool_prefetch");
  CHECK(queued <= 2, "prefetch queued %u reads for 2 experts", queued);

  moepool_stats_t* s = moepool_client_stats(c, &err);
  CHECK_OK(err, "moepool_client_stats");
  if (s != NULL) {
    CHECK(moepool_stats_pool_bytes(s) == (32u << 20), "pool is %llu bytes",
          (unsigned long long)moepool_stats_pool_bytes(s));
    CHECK(moepool_stats_misses(s) >= 5, "%llu misses", (unsigned long long)moepool_stats_misses(s));
    CHECK(moepool_stats_hits(s) >= 3, "%llu hits", (unsigned long long)moepool_stats_hits(s));
    CHECK(moepool_stats_bytes_read(s) >= 5 * moepool_model_layer_expert_bytes(m, 0),
          "%llu bytes read", (unsigned long long)moepool_stats_bytes_read(s));
    CHECK(moepool_stats_read_errors(s) == 0, "read errors");
    CHECK(moepool_stats_pinned_bytes(s) == 0, "%llu bytes still pinned after release",
          (unsigned long long)moepool_stats_pinned_bytes(s));
    CHECK(moepool_stats_sessions(s) >= 1, "no sessions");
    moepool_stats_destroy(s);
  }
  moepool_model_destroy(m);
}

static void test_paths(moepool_client_t* c) {
  char* err = NULL;
  char path[600];
  snprintf(path, sizeof(path), "%s/m.gguf", g_outside);
  moepool_model_t* m = moepool_model_open(c, path, &err);
  CHECK(m == NULL, "opened %s outside the model root", path);
  CHECK_ERROR(err, "permission");
  moepool_model_destroy(m);

  snprintf(path, sizeof(path), "%s/escape.gguf", g_root); /* a symlink out of the root */
  char target[600];
  snprintf(target, sizeof(target), "%s/m.gguf", g_outside);
  CHECK(symlink(target, path) == 0, "symlink: %s", strerror(errno));
  m = moepool_model_open(c, path, &err);
  CHECK(m == NULL, "opened a symlink that escapes the model root");
  CHECK_ERROR(err, "permission");
  moepool_model_destroy(m);

  snprintf(path, sizeof(path), "%s/missing.gguf", g_root);
  m = moepool_model_open(c, path, &err);
  CHECK(m == NULL, "opened a missing file");
  CHECK(err != NULL, "no error for a missing file");
  moepool_free(err);
  err = NULL;

  CHECK(moepool_debug_expert_extent(g_model, 0, 8, 0, NULL, NULL, NULL, &err) == -1,
        "debug extent of expert 8 of 8");
  CHECK_ERROR(err, "8");
}

/* Several threads share one client: each acquires, verifies and releases in a loop. */
struct thread_arg {
  moepool_client_t* client;
  uint64_t model_id;
  uint32_t layers[2];
  int index;
};

static void* thread_main(void* p) {
  struct thread_arg* a = p;
  for (int it = 0; it < 20; it++) {
    uint32_t layer = a->layers[(a->index + it) % 2];
    uint32_t e[3] = {(uint32_t)(a->index + it) % 8, (uint32_t)(a->index + it + 3) % 8,
                     (uint32_t)(a->index + it + 6) % 8};
    char* err = NULL;
    moepool_leases_t* l = moepool_acquire(a->client, a->model_id, layer, e, 3, &err);
    CHECK_OK(err, "threaded acquire");
    if (l == NULL) continue;
    CHECK(verify_leases(a->client, l, layer) == 0, "thread %d: pool bytes differ", a->index);
    moepool_leases_release(a->client, l, &err);
    CHECK_OK(err, "threaded release");
    moepool_leases_destroy(l);
  }
  return NULL;
}

static void test_threads(moepool_client_t* c) {
  char* err = NULL;
  moepool_model_t* m = moepool_model_open(c, g_model, &err);
  CHECK_OK(err, "open for threads");
  if (m == NULL) return;
  enum { kThreads = 4 };
  pthread_t threads[kThreads];
  struct thread_arg args[kThreads];
  int started = 0;
  for (int i = 0; i < kThreads; i++) {
    args[i] = (struct thread_arg){c, moepool_model_id(m),
                                  {moepool_model_layer_index(m, 0), moepool_model_layer_index(m, 1)},
                                  i};
    if (pthread_create(&threads[i], NULL, thread_main, &args[i]) == 0) started++;
  }
  CHECK(started == kThreads, "started %d of %d threads", started, kThreads);
  for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
  moepool_model_destroy(m);
}

/* A second worker shares the first one's experts; its pins die with it. */
static void test_second_worker(moepool_client_t* c) {
  char* err = NULL;
  moepool_client_t* c2 = moepool_client_connect(g_socket, "c_api_test#2", &err);
  CHECK_OK(err, "second client");
  if (c2 == NULL) return;
  CHECK(moepool_client_session_id(c2) != moepool_client_session_id(c), "same session id");
  moepool_model_t* m = moepool_model_open(c2, g_model, &err);
  CHECK_OK(err, "open in second client");
  if (m != NULL) {
    const uint32_t e[1] = {3};
    moepool_leases_t* l = moepool_acquire(c2, moepool_model_id(m), moepool_model_layer_index(m, 0),
                                          e, 1, &err);
    CHECK_OK(err, "acquire in second client");
    if (l != NULL) {
      CHECK(moepool_leases_hit(l, 0) == 1, "expert 3 read again instead of shared");
      CHECK(verify_leases(c2, l, moepool_model_layer_index(m, 0)) == 0, "second client bytes");
      moepool_leases_destroy(l); /* not released: the session's end must drop the pin */
    }
    moepool_model_destroy(m);
  }
  moepool_client_destroy(c2);

  /* The daemon ends the session when its stream closes; poll until the pin is gone. */
  uint64_t pinned = 1;
  for (int i = 0; i < 200 && pinned != 0; i++) {
    moepool_stats_t* s = moepool_client_stats(c, &err);
    if (s == NULL) break;
    pinned = moepool_stats_pinned_bytes(s);
    moepool_stats_destroy(s);
    if (pinned != 0) sleep_ms(20);
  }
  CHECK_OK(err, "stats after second client");
  CHECK(pinned == 0, "%llu bytes still pinned after the second client went away",
        (unsigned long long)pinned);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s <bindir>\n", argv[0]);
    return 2;
  }
  snprintf(g_bindir, sizeof(g_bindir), "%s", argv[1]);
  char tool[1100];
  snprintf(tool, sizeof(tool), "%s/moepoold", g_bindir);
  int have = access(tool, X_OK) == 0;
  snprintf(tool, sizeof(tool), "%s/moepool-synth", g_bindir);
  have = have && access(tool, X_OK) == 0;
  if (!have) {
    fprintf(stderr, "SKIP: moepoold or moepool-synth not built in %s\n", g_bindir);
    return 77;
  }
  snprintf(g_root, sizeof(g_root), "/tmp/moepool-capi-XXXXXX");
  snprintf(g_outside, sizeof(g_outside), "/tmp/moepool-capi-out-XXXXXX");
  if (mkdtemp(g_root) == NULL || mkdtemp(g_outside) == NULL) {
    fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
    return 1;
  }
  snprintf(g_socket, sizeof(g_socket), "%s/s.sock", g_root);
  snprintf(g_model, sizeof(g_model), "%s/m.gguf", g_root);

  char* err = NULL;
  moepool_client_t* c = moepool_client_connect(g_socket, "c_api_test", &err);
  CHECK(c == NULL, "connected with no daemon running");
  CHECK_ERROR(err, "cannot reach moepoold at");

  char outside_model[600];
  snprintf(outside_model, sizeof(outside_model), "%s/m.gguf", g_outside);
  int synth_ok = synth_model(g_model) == 0 && synth_model(outside_model) == 0;
  CHECK(synth_ok, "moepool-synth failed");
  if (synth_ok) {
    start_daemon();
    c = connect_when_ready("c_api_test");
    CHECK(c != NULL, "could not connect to the daemon");
  }
  if (c != NULL) {
    CHECK(moepool_client_session_id(c) != 0, "session id 0");
    CHECK(moepool_client_pool_base(c) != NULL, "no pool base");
    CHECK(moepool_client_pool_bytes(c) == (32u << 20), "pool of %llu bytes",
          (unsigned long long)moepool_client_pool_bytes(c));
    test_model_and_leases(c);
    test_paths(c);
    test_threads(c);
    test_second_worker(c);
    moepool_client_destroy(c);
  }
  CHECK(g_daemon < 0 || daemon_alive(), "moepoold died during the test");
  stop_daemon();
  if (g_failed > 0) print_daemon_log();
  remove_tree(g_root);
  remove_tree(g_outside);
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
