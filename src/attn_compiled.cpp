// The library of attn's compiled mode (CMake target attn::attn_compiled): with
// ATTN_SEPARATE_COMPILATION and ATTN_BUILDING_LIBRARY set, every definition the headers hold back
// from their users in that mode (ATTN_API functions and what they use) is compiled here, once.
// The umbrella reaches every header with such definitions (tests/hygiene/check_compiled_sources.sh
// checks it); a header it does not reach is included here.
#include <attn/attn.hpp>
