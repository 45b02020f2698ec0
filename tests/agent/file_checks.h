// Small file-system checks shared by the agent's tests of secret files and the secrets tmpfs.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace berth::agent::testing {

// Whether `p` is on a tmpfs (or ramfs): never on disk.
inline bool OnTmpfs(const std::filesystem::path& p) {
  struct statfs s {};
  return statfs(p.c_str(), &s) == 0 && (s.f_type == TMPFS_MAGIC || s.f_type == RAMFS_MAGIC);
}

// The permission bits of `p` itself (not of a link's target); -1 if it does not exist.
inline int ModeOf(const std::filesystem::path& p) {
  struct stat st {};
  if (lstat(p.c_str(), &st) != 0) return -1;
  return static_cast<int>(st.st_mode & 07777);
}

// The whole content of `p`; empty if it cannot be read.
inline std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A name unique to this process and the running test, for scratch directories.
inline std::string TestName() {
  return std::to_string(getpid()) + "-" +
         ::testing::UnitTest::GetInstance()->current_test_info()->name();
}

}  // namespace berth::agent::testing
