#include "search/version.hpp"

namespace hwnas {
const char* version() { return "0.1.0"; }
}  // namespace hwnas
