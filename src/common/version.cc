#include "common/version.h"

namespace berth {
const char* Version() {
  return BERTH_VERSION;
}
}  // namespace berth
