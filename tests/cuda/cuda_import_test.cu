// cuda_import_test: the proof that CUDA engines can share a VRAM pool. Attaches to a
// running moepoold whose pool.backend is "vulkan", finds the CUDA device that is the
// pool's GPU (cudaDeviceProp.uuid == the daemon's deviceUUID), imports each pool segment's
// OPAQUE_FD with cudaImportExternalMemory, maps it with cudaExternalMemoryGetMappedBuffer,
// then acquires experts of the model, copies every leased projection's bytes back from
// the mapped segment and compares them with the model file (read through the catalog).
//
//   cuda_import_test SOCKET MODEL [--layers N] [--experts N] [--batch N]
//     --layers N   check the first N MoE layers (default all)
//     --experts N  check the first N experts of each layer (default all)
//     --batch N    experts acquired at once (default 4; the pool must hold N pinned)
//
// Prints "cuda import: N experts, M bytes identical" and exits 0; on the first mismatch
// prints "mismatch: layer L expert E projection P byte B: pool 0xXX file 0xYY" and exits 3;
// exits 1 on an error ("error: ..."), 77 when there is nothing to test ("skip: ...": the
// pool is a host pool, or there is no CUDA device).
//
// Fds: Client::dup_segment_fds() gives this process its own descriptors. A successful
// cudaImportExternalMemory takes ownership of its fd (the CUDA driver closes it when the
// external memory is destroyed); a failed import leaves it ours, and we close it, as we
// close the fds of segments never imported.
//
// Built by CMake only where nvcc exists (tests/cuda/CMakeLists.txt). By hand on the GPU
// machine (CUDA 13), against a libmoepool.so built from the same tree:
//   SRC=/path/to/moepool LIB=/path/to/dir-with-libmoepool.so
//   nvcc -std=c++20 -O2 -I$SRC -I$SRC/client/include -L$LIB -lmoepool -Xlinker -rpath=$LIB
//        -o cuda_import_test $SRC/tests/cuda/cuda_import_test.cu        (one line)
// (libmoepool.so exports moepool::Catalog, which this program uses for the file offsets.)
// Run:
//   moepool-synth --out $M/models/m.gguf --arch qwen3moe --layers 2 --experts 16
//   printf '[pool]\nbackend = "vulkan"\n' > $M/vram.toml
//   moepoold --config $M/vram.toml --socket $M/s.sock --pool-size 256M --segment-size 32M
//            --model-root $M/models --state-dir $M/state &                 (one line)
//   ./cuda_import_test $M/s.sock $M/models/m.gguf
#include <cuda_runtime.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/catalog.h"
#include "moepool/client.h"

using namespace moepool;

namespace {

int error(const std::string& what) {
  std::printf("error: %s\n", what.c_str());
  return 1;
}

int error(const Status& st) { return error(st.to_string()); }

int cuda_error(const std::string& what, cudaError_t e) {
  return error(what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

std::string uuid_string(const uint8_t* u) {
  char buf[40];
  std::snprintf(buf, sizeof buf,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
                u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
                u[15]);
  return buf;
}

// One imported segment: the CUDA external memory and its mapping.
struct Segment {
  cudaExternalMemory_t memory = nullptr;
  uint8_t* device = nullptr;
};

// Everything imported, destroyed in order (mappings, then the external memory, which
// closes the fd CUDA owns), and the fds never handed to CUDA.
struct Imports {
  std::vector<Segment> segments;
  std::vector<int> unused_fds;
  ~Imports() {
    for (Segment& s : segments) {
      if (s.device) cudaFree(s.device);
      if (s.memory) cudaDestroyExternalMemory(s.memory);
    }
    for (int fd : unused_fds)
      if (fd >= 0) close(fd);
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s SOCKET MODEL [--layers N] [--experts N] [--batch N]\n",
                 argv[0]);
    return 2;
  }
  const std::string socket = argv[1], model_path = argv[2];
  uint32_t max_layers = UINT32_MAX, max_experts = UINT32_MAX, batch = 4;
  for (int i = 3; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    uint32_t v = static_cast<uint32_t>(std::strtoul(argv[i + 1], nullptr, 10));
    if (a == "--layers")
      max_layers = v;
    else if (a == "--experts")
      max_experts = v;
    else if (a == "--batch")
      batch = v ? v : 1;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }

  auto client = Client::connect(socket, "cuda_import_test");
  if (!client.ok()) return error(client.status());
  Client& c = **client;
  if (c.pool_backend() != "vulkan") {
    std::printf("skip: the daemon's pool backend is \"%s\", not \"vulkan\"\n",
                c.pool_backend().c_str());
    return 77;
  }
  const std::array<uint8_t, 16> pool_uuid = c.device_uuid();

  // The CUDA device that holds the pool: same physical GPU, by UUID.
  int n_dev = 0;
  cudaError_t e = cudaGetDeviceCount(&n_dev);
  if (e != cudaSuccess || n_dev == 0) {
    std::printf("skip: no CUDA device (%s)\n",
                e == cudaSuccess ? "0 devices" : cudaGetErrorName(e));
    return 77;
  }
  int dev = -1;
  std::string seen;
  for (int i = 0; i < n_dev; ++i) {
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, i);
    if (e != cudaSuccess) return cuda_error("cudaGetDeviceProperties", e);
    const uint8_t* u = reinterpret_cast<const uint8_t*>(prop.uuid.bytes);
    seen += " " + std::to_string(i) + ":" + prop.name + " " + uuid_string(u);
    if (dev < 0 && std::memcmp(u, pool_uuid.data(), 16) == 0) {
      dev = i;
      std::printf("cuda device %d: %s, deviceUUID %s = the pool's\n", i, prop.name,
                  uuid_string(u).c_str());
    }
  }
  if (dev < 0)
    return error("the pool lives on the GPU with deviceUUID " + uuid_string(pool_uuid.data()) +
                 ", which is none of the CUDA devices:" + seen);
  e = cudaSetDevice(dev);
  if (e != cudaSuccess) return cuda_error("cudaSetDevice", e);

  // Import every segment once and map it whole.
  const uint64_t seg_bytes = c.segment_bytes();
  auto fds = c.dup_segment_fds();
  if (!fds.ok()) return error(fds.status());
  Imports imports;
  imports.unused_fds = *fds;
  for (size_t i = 0; i < fds->size(); ++i) {
    cudaExternalMemoryHandleDesc desc;
    std::memset(&desc, 0, sizeof desc);
    desc.type = cudaExternalMemoryHandleTypeOpaqueFd;
    desc.handle.fd = (*fds)[i];
    desc.size = seg_bytes;
    desc.flags = cudaExternalMemoryDedicated;  // the daemon's export is a dedicated allocation
    Segment s;
    e = cudaImportExternalMemory(&s.memory, &desc);
    if (e != cudaSuccess)  // the fd is still ours: ~Imports closes it
      return cuda_error("cudaImportExternalMemory(segment " + std::to_string(i) + ", " +
                            std::to_string(seg_bytes) + " bytes)",
                        e);
    imports.unused_fds[i] = -1;  // CUDA owns it now
    imports.segments.push_back(s);
    cudaExternalMemoryBufferDesc buf;
    std::memset(&buf, 0, sizeof buf);
    buf.offset = 0;
    buf.size = seg_bytes;
    void* ptr = nullptr;
    e = cudaExternalMemoryGetMappedBuffer(&ptr, s.memory, &buf);
    if (e != cudaSuccess)
      return cuda_error("cudaExternalMemoryGetMappedBuffer(segment " + std::to_string(i) + ")", e);
    imports.segments.back().device = static_cast<uint8_t*>(ptr);
  }
  std::printf("imported %zu segments of %llu bytes\n", imports.segments.size(),
              static_cast<unsigned long long>(seg_bytes));

  // The model: file bytes through the catalog, expert bytes through leases.
  auto catalog = Catalog::open(model_path);
  if (!catalog.ok()) return error(catalog.status());
  std::vector<int> files;
  for (const auto& f : catalog->files()) {
    int fd = open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return error(Status::FromErrno("open " + f.path, errno));
    files.push_back(fd);
  }
  auto model = c.open_model(model_path);
  if (!model.ok()) return error(model.status());

  uint64_t experts = 0, bytes = 0;
  std::vector<uint8_t> want, got;
  uint32_t layers_done = 0;
  for (const MoeLayer& layer : catalog->layers()) {
    if (layers_done++ >= max_layers) break;
    const uint32_t n = std::min(layer.n_experts, max_experts);
    for (uint32_t first = 0; first < n; first += batch) {
      std::vector<uint32_t> ids;
      for (uint32_t e2 = first; e2 < n && e2 < first + batch; ++e2) ids.push_back(e2);
      auto leases = c.acquire(model->id, layer.layer, ids);
      if (!leases.ok()) return error(leases.status());
      for (const Lease& l : *leases) {
        if (l.projections.size() != layer.projections.size())
          return error("expert " + std::to_string(l.expert) + " has " +
                       std::to_string(l.projections.size()) + " projections, the file " +
                       std::to_string(layer.projections.size()));
        const uint64_t slot = l.slot_index * l.stride;
        const uint64_t seg = slot / seg_bytes;
        for (size_t p = 0; p < l.projections.size(); ++p) {
          const ProjectionView& v = l.projections[p];
          const uint64_t off = slot % seg_bytes + v.offset_in_slot;
          if (seg >= imports.segments.size() || off + v.bytes > seg_bytes)
            return error("expert " + std::to_string(l.expert) + " projection " + std::to_string(p) +
                         " lies past segment " + std::to_string(seg));
          Extent x = layer.projections[p].expert_extent(l.expert);
          if (x.bytes != v.bytes)
            return error("expert " + std::to_string(l.expert) + " projection " + std::to_string(p) +
                         ": lease has " + std::to_string(v.bytes) + " bytes, the file " +
                         std::to_string(x.bytes));
          want.resize(x.bytes);
          got.resize(x.bytes);
          if (pread(files[x.file_index], want.data(), x.bytes, static_cast<off_t>(x.offset)) !=
              static_cast<ssize_t>(x.bytes))
            return error(Status::FromErrno("pread " + catalog->files()[x.file_index].path, errno));
          e = cudaMemcpy(got.data(), imports.segments[seg].device + off, x.bytes,
                         cudaMemcpyDeviceToHost);
          if (e != cudaSuccess) return cuda_error("cudaMemcpy", e);
          for (uint64_t b = 0; b < x.bytes; ++b) {
            if (got[b] != want[b]) {
              std::printf(
                  "mismatch: layer %u expert %u projection %zu byte %llu: pool 0x%02x "
                  "file 0x%02x (file offset %llu, segment %llu offset %llu)\n",
                  layer.layer, l.expert, p, static_cast<unsigned long long>(b), got[b], want[b],
                  static_cast<unsigned long long>(x.offset + b),
                  static_cast<unsigned long long>(seg), static_cast<unsigned long long>(off + b));
              return 3;
            }
          }
          bytes += x.bytes;
        }
        ++experts;
      }
      Status st = c.release(*leases);
      if (!st.ok()) return error(st);
    }
  }
  for (int fd : files) close(fd);
  std::printf("cuda import: %llu experts, %llu bytes identical\n",
              static_cast<unsigned long long>(experts), static_cast<unsigned long long>(bytes));
  return 0;
}
