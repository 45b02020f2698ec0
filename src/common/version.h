// The berth version string, set by the build (CMake's project version).
#pragma once

namespace berth {
const char* Version();
}  // namespace berth
