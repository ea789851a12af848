#pragma once
// Peak resident memory of the benchmark process, for the peak-memory counters of the bench_*
// programs (Linux /proc; 0 where unavailable).
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

namespace bench {

// Value of a "VmXXX:   123 kB" line of /proc/self/status, in KiB (0 if unavailable).
inline int64_t proc_status_kib(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(f, line))
    if (line.compare(0, n, key) == 0) return std::stoll(line.substr(n + 1));
  return 0;
}

// Resets the peak-RSS mark (Linux >= 4.0) and returns the current RSS in KiB.
inline int64_t reset_peak() {
  if (FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
  return proc_status_kib("VmRSS:");
}

}  // namespace bench
