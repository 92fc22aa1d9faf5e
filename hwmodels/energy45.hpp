// Per-operation energies at 45 nm, 0.9 V (Horowitz, ISSCC 2014; docs/hardware.md §3), and the
// first-order rule used to scale them to another process node.
#pragma once

#include "hwmodels/device_base.hpp"

namespace hwnas::hw {

// pJ per multiply-accumulate (mult + add) and per other arithmetic op (an add), by precision.
// fp32: 3.7 + 0.9 = 4.6 pJ (docs/hardware.md §3.2 E_MAC), fp16: 1.1 + 0.4, int8: 0.2 + 0.03.
// int4 (indexed by Precision::Int4): Horowitz gives no 4-bit figure, so a device that runs int4
// natively is charged the int8 energy (an upper bound [U]).
inline constexpr double kMacPj45[kNumPrecisions] = {4.6, 1.5, 0.23, 0.23};
inline constexpr double kAddPj45[kNumPrecisions] = {0.9, 0.4, 0.03, 0.03};

// Dynamic energy ~ C * V^2 with C proportional to feature size: scale = (nm / 45) * (V / 0.9)^2.
// A first-order rule [U]: it ignores wire-dominated energy and FinFET capacitance changes.
inline double horowitz_scale(double process_nm, double vdd) {
  return (process_nm / 45.0) * (vdd / 0.9) * (vdd / 0.9);
}

}  // namespace hwnas::hw
