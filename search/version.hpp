#pragma once
namespace hwnas {
const char* version();
}  // namespace hwnas
