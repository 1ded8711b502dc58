// Runtime CPU dispatch for hot loops. RAWPROOF_CLONES compiles a function twice, for
// x86-64-v3 (AVX2, FMA) and for baseline x86-64, and the dynamic loader picks the one
// the CPU supports: the wheel needs no -march and still uses AVX2 where it exists.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define RAWPROOF_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define RAWPROOF_CLONES
#endif
