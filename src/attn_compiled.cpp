// The library of attn's compiled mode (CMake target attn::attn_compiled): with
// ATTN_SEPARATE_COMPILATION and ATTN_BUILDING_LIBRARY set, every definition the headers hold back
// from their users in that mode (ATTN_API functions and what they use) is compiled here, once.
#include <attn/attn.hpp>
#include <attn/ops/positional.hpp>
#include <attn/ops/sparsemax.hpp>
