// Whether this build can hold x86 kernels compiled for a wider ISA than the build's own
// (functions marked __attribute__((target("avx512f"))) and picked at run time by CPU
// detection): x86-64 with GCC or Clang.  Defines HWNAS_X86_TARGETS and brings the intrinsics.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HWNAS_X86_TARGETS 1
#include <immintrin.h>
#endif
