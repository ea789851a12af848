#pragma once
// Whole-file writes that never leave a half-written file under the final name.
//
// The bytes go to a uniquely named temporary file in the same directory as the target (a rename
// is only atomic within one file system), are flushed and fsync'ed, and the temporary file is
// then renamed over the target. A reader therefore sees either the old file or the complete new
// one. On failure the temporary file is removed and std::runtime_error names the path and the
// system's reason. A process killed mid-write (kill -9, power loss) cannot remove its temporary
// file; the next successful write of the same target removes such leftovers (POSIX: those whose
// writer process no longer exists).

#include <cstddef>
#include <string>
#include "../config.hpp"

namespace attn::io {
// Writes `size` bytes (or `bytes`) to `path` atomically, as described above.
ATTN_API void write_file_atomic(const std::string& path, const void* data, std::size_t size);
ATTN_API void write_file_atomic(const std::string& path, const std::string& bytes);
}  // namespace attn::io

#if ATTN_HEADER_DEFINITIONS
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#define ATTN_IO_POSIX 1
#else
#define ATTN_IO_POSIX 0
#endif

namespace attn::io {

namespace detail {

// std::strerror is not guaranteed thread-safe; the generic category's message is.
inline std::string errno_text(int err) { return std::generic_category().message(err); }

[[noreturn]] inline void throw_io(const std::string& what, const std::string& path, int err) {
  throw std::runtime_error("write_file_atomic: " + what + " '" + path + "': " + errno_text(err));
}

inline std::string temp_name_for(const std::string& path, unsigned attempt) {
  // pid separates processes, the counter separates threads and calls, the clock separates a
  // process from an earlier one that reused its pid and crashed before cleaning up.
  static std::atomic<unsigned long long> counter{0};
  const unsigned long long n = counter.fetch_add(1, std::memory_order_relaxed);
  const auto ticks = static_cast<unsigned long long>(
      std::chrono::steady_clock::now().time_since_epoch().count());
#if ATTN_IO_POSIX
  const long long pid = static_cast<long long>(::getpid());
#else
  const long long pid = 0;
#endif
  return path + ".tmp." + std::to_string(pid) + "." + std::to_string(n) + "." +
         std::to_string(ticks % 1000000007ULL) + "." + std::to_string(attempt);
}

#if ATTN_IO_POSIX
// Removes the temporary files that writers of `path` killed mid-write left behind: entries
// "<name>.tmp.<pid>.*" next to it whose pid is not a running process (kill(pid, 0) says ESRCH).
// This process's own and other live processes' temporaries are kept: they may be in use. Best
// effort: errors are ignored. (A writer in another PID namespace sharing the directory would
// look dead; atomic writes of one target from several containers are not supported.)
inline void remove_stale_temporaries(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const std::string prefix = target.filename().string() + ".tmp.";
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const size_t dot = name.find('.', prefix.size());
    const std::string pid_text = name.substr(prefix.size(), dot == std::string::npos ? dot : dot - prefix.size());
    if (pid_text.empty() || pid_text.size() > 9 || pid_text.find_first_not_of("0123456789") != std::string::npos)
      continue;
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    if (pid > 0 && pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) (void)::unlink(it->path().c_str());
  }
}

// Makes the rename itself durable. Best effort: some file systems refuse fsync on directories,
// and the data is already safe in the renamed file.
inline void sync_parent_directory(const std::string& path) {
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int fd = ::open(dir.c_str(), O_RDONLY);
  if (fd >= 0) {
    (void)::fsync(fd);
    (void)::close(fd);
  }
}
#endif

}  // namespace detail

ATTN_API void write_file_atomic(const std::string& path, const void* data, std::size_t size) {
  if (path.empty()) throw std::runtime_error("write_file_atomic: empty path");
  if (data == nullptr && size != 0)
    throw std::runtime_error("write_file_atomic: null data with size " + std::to_string(size) +
                             " for '" + path + "'");
  const char* bytes = static_cast<const char*>(data);

#if ATTN_IO_POSIX
  std::string tmp;
  int fd = -1;
  for (unsigned attempt = 0; attempt < 16 && fd < 0; ++attempt) {
    tmp = detail::temp_name_for(path, attempt);
    // O_EXCL: never clobber a file we did not create, even if names collide.
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) detail::throw_io("cannot create temporary file for", path, errno);
  }
  if (fd < 0) detail::throw_io("cannot create a unique temporary file for", path, EEXIST);

  auto fail = [&](const char* what, int err) {
    if (fd >= 0) (void)::close(fd);
    (void)::unlink(tmp.c_str());
    detail::throw_io(what, path, err);
  };

  std::size_t done = 0;
  while (done < size) {
    const ::ssize_t n = ::write(fd, bytes + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write temporary file for", errno);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) fail("cannot fsync temporary file for", errno);
  const int closed = ::close(fd);
  fd = -1;
  if (closed != 0) fail("cannot close temporary file for", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename temporary file onto", errno);
  detail::sync_parent_directory(path);
  detail::remove_stale_temporaries(path);
#else
  // Portable fallback: no fsync and, on Windows, std::rename refuses an existing target, so the
  // old file is removed first; the window between the two calls is not atomic.
  const std::string tmp = detail::temp_name_for(path, 0);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) detail::throw_io("cannot create temporary file for", path, errno);
  const bool wrote = size == 0 || std::fwrite(bytes, 1, size, f) == size;
  const int werr = errno;
  const bool flushed = std::fflush(f) == 0;
  const bool closed = std::fclose(f) == 0;
  if (!wrote || !flushed || !closed) {
    std::remove(tmp.c_str());
    detail::throw_io("cannot write temporary file for", path, werr);
  }
  std::remove(path.c_str());
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    detail::throw_io("cannot rename temporary file onto", path, err);
  }
#endif
}

ATTN_API void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace attn::io
#endif  // ATTN_HEADER_DEFINITIONS
