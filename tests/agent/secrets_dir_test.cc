// SecretsDir on a real tmpfs (/dev/shm), and its refusal of a directory on a real disk.
#include "agent/secrets_dir.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/file_checks.h"

namespace berth::agent {
namespace {

namespace fs = std::filesystem;

using testing::ModeOf;
using testing::OnTmpfs;
using testing::Slurp;
using testing::TestName;

std::vector<SecretFile> Files(std::initializer_list<std::pair<const char*, const char*>> items,
                              int mode = 0400) {
  std::vector<SecretFile> out;
  for (const auto& [name, value] : items) out.push_back({name, mode, secrets::SecretBuffer(value)});
  return out;
}

class SecretsDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!OnTmpfs("/dev/shm")) GTEST_SKIP() << "/dev/shm is not a tmpfs here";
    base_ = fs::path("/dev/shm") / ("berth-secrets-test-" + TestName());
    fs::remove_all(base_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(base_, ec);
  }
  fs::path base_;
};

TEST_F(SecretsDirTest, WritesFilesOwnerOnlyAndWipesTheBuffers) {
  SecretsDir dir({(base_ / "root").string(), /*mount_tmpfs=*/false});
  ASSERT_TRUE(dir.Ready().ok());
  EXPECT_EQ(ModeOf(base_ / "root"), 0700);
  auto files = Files({{"db_password", "hunter2"}, {"empty", ""}});
  files.push_back({"key.pem", 0600, secrets::SecretBuffer(std::string("-----KEY\0x\n", 11))});
  auto written = dir.Write("a1", "t", files);
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  EXPECT_EQ(*written, (base_ / "root" / "a1" / "t").string());
  EXPECT_EQ(*written, dir.TaskDir("a1", "t"));
  EXPECT_EQ(ModeOf(base_ / "root" / "a1"), 0700);
  EXPECT_EQ(ModeOf(*written), 0700);
  EXPECT_EQ(Slurp(fs::path(*written) / "db_password"), "hunter2");
  EXPECT_EQ(ModeOf(fs::path(*written) / "db_password"), 0400);
  EXPECT_EQ(Slurp(fs::path(*written) / "empty"), "");
  EXPECT_EQ(Slurp(fs::path(*written) / "key.pem"), std::string("-----KEY\0x\n", 11));
  EXPECT_EQ(ModeOf(fs::path(*written) / "key.pem"), 0600);
  for (const auto& f : files) EXPECT_TRUE(f.value.empty()) << f.name;  // wiped
}

TEST_F(SecretsDirTest, GivesAFileToTheUidAndGidItNames) {
  if (geteuid() != 0) GTEST_SKIP() << "chown needs root";
  SecretsDir dir({(base_ / "root").string(), false});
  std::vector<SecretFile> files;
  files.push_back({"for_app", 0400, secrets::SecretBuffer(std::string("v1")), 1000, 1001});
  files.push_back({"group_only", 0400, secrets::SecretBuffer(std::string("v2")), -1, 1002});
  files.push_back({"mine", 0400, secrets::SecretBuffer(std::string("v3"))});
  auto written = dir.Write("a1", "t", files);
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  auto owner = [&](const char* name) {
    struct stat st {};
    EXPECT_EQ(lstat((fs::path(*written) / name).c_str(), &st), 0) << name;
    return std::pair<uid_t, gid_t>(st.st_uid, st.st_gid);
  };
  EXPECT_EQ(owner("for_app"), (std::pair<uid_t, gid_t>(1000, 1001)));
  EXPECT_EQ(owner("group_only"), (std::pair<uid_t, gid_t>(geteuid(), 1002)));
  EXPECT_EQ(owner("mine"), (std::pair<uid_t, gid_t>(geteuid(), getegid())));
  EXPECT_EQ(ModeOf(fs::path(*written) / "for_app"), 0400);
  EXPECT_EQ(Slurp(fs::path(*written) / "for_app"), "v1");
  // The other user must reach its files, so the task's directory lets anyone through (0711)
  // but lets no one else list it; without an owned file it stays 0700.
  EXPECT_EQ(ModeOf(*written), 0711);
  auto plain = Files({{"x", "1"}});
  auto again = dir.Write("a2", "t", plain);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(ModeOf(*again), 0700);
}

TEST_F(SecretsDirTest, EachWriteStartsFromAnEmptyDirectory) {
  SecretsDir dir({(base_ / "root").string(), false});
  auto first = Files({{"a", "1"}, {"b", "2"}});
  ASSERT_TRUE(dir.Write("a1", "t", first).ok());
  // Something the task (or anyone) left there does not survive the next start.
  std::ofstream(base_ / "root" / "a1" / "t" / "stray") << "x";
  auto second = Files({{"a", "new"}});
  auto written = dir.Write("a1", "t", second);
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  EXPECT_EQ(Slurp(fs::path(*written) / "a"), "new");
  EXPECT_FALSE(fs::exists(fs::path(*written) / "b"));
  EXPECT_FALSE(fs::exists(fs::path(*written) / "stray"));
}

TEST_F(SecretsDirTest, RemovesTasksAllocationsAndLeftovers) {
  SecretsDir dir({(base_ / "root").string(), false});
  for (const char* alloc : {"a1", "a2", "a3"}) {
    for (const char* task : {"t", "u"}) {
      auto f = Files({{"x", "v"}});
      ASSERT_TRUE(dir.Write(alloc, task, f).ok());
    }
  }
  dir.RemoveTask("a1", "t");
  EXPECT_FALSE(fs::exists(base_ / "root" / "a1" / "t"));
  EXPECT_TRUE(fs::exists(base_ / "root" / "a1" / "u"));
  dir.RemoveTask("a1", "u");  // the last task: the allocation's directory goes too
  EXPECT_FALSE(fs::exists(base_ / "root" / "a1"));
  dir.RemoveAlloc("a2");
  EXPECT_FALSE(fs::exists(base_ / "root" / "a2"));
  auto f = Files({{"x", "v"}});
  ASSERT_TRUE(dir.Write("a4", "t", f).ok());
  auto removed = dir.RemoveAllExcept({"a4"});
  EXPECT_EQ(removed, (std::vector<std::string>{"a3"}));
  EXPECT_TRUE(fs::exists(base_ / "root" / "a4" / "t" / "x"));
  // Names that are not one path component are refused, and never removed through.
  auto g = Files({{"x", "v"}});
  EXPECT_EQ(dir.Write("..", "t", g).status().code(), Code::kInvalidArgument);
  auto h = Files({{"../x", "v"}});
  EXPECT_EQ(dir.Write("a5", "t", h).status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(fs::exists(base_ / "root" / "a5"));
  dir.RemoveAlloc("..");
  EXPECT_TRUE(fs::exists(base_ / "root" / "a4"));
}

TEST_F(SecretsDirTest, ADirectoryThatIsNotBerthsOwnIsNeverEmptied) {
  // --secrets-dir pointed at something that holds other files (the data dir, /dev/shm).
  fs::create_directories(base_ / "root");
  std::ofstream(base_ / "root" / "machine.key") << "precious";
  fs::create_directories(base_ / "root" / "someones-dir");
  SecretsDir dir({(base_ / "root").string(), false});
  EXPECT_TRUE(dir.RemoveAllExcept({}).empty());
  auto st = dir.Ready();
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_NE(st.message().find("a directory of its own"), std::string::npos) << st.message();
  auto f = Files({{"x", "v"}});
  EXPECT_FALSE(dir.Write("a1", "t", f).ok());
  EXPECT_TRUE(dir.RemoveAllExcept({}).empty());
  EXPECT_EQ(Slurp(base_ / "root" / "machine.key"), "precious");
  EXPECT_TRUE(fs::exists(base_ / "root" / "someones-dir"));
  // In its own directory, the sweep leaves files alone (only allocations' directories go).
  SecretsDir own({(base_ / "own").string(), false});
  ASSERT_TRUE(own.Ready().ok());
  std::ofstream(base_ / "own" / "note") << "x";
  EXPECT_TRUE(own.RemoveAllExcept({}).empty());
  EXPECT_TRUE(fs::exists(base_ / "own" / "note"));
}

TEST_F(SecretsDirTest, NeverWritesThroughASymlink) {
  fs::create_directories(base_ / "elsewhere");
  fs::create_directory_symlink(base_ / "elsewhere", base_ / "root");
  SecretsDir linked({(base_ / "root").string(), false});
  Status st = linked.Ready();
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_NE(st.message().find("symlink"), std::string::npos) << st.message();
  // An allocation directory replaced by a symlink is neither followed nor removed through: the
  // link is replaced by a directory of the agent's.
  SecretsDir dir({(base_ / "real").string(), false});
  ASSERT_TRUE(dir.Ready().ok());
  fs::create_directories(base_ / "elsewhere" / "t");
  std::ofstream(base_ / "elsewhere" / "t" / "keep") << "x";
  fs::create_directory_symlink(base_ / "elsewhere", base_ / "real" / "a1");
  auto f = Files({{"x", "v"}});
  auto written = dir.Write("a1", "t", f);
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  EXPECT_FALSE(fs::is_symlink(base_ / "real" / "a1"));
  EXPECT_EQ(Slurp(base_ / "real" / "a1" / "t" / "x"), "v");
  EXPECT_TRUE(fs::exists(base_ / "elsewhere" / "t" / "keep"));
  EXPECT_FALSE(fs::exists(base_ / "elsewhere" / "t" / "x"));
}

// A directory on a real disk: no file is written, and the message says where and why.
TEST(SecretsDirDiskTest, RefusesADirectoryOnARealDisk) {
  fs::path base = fs::current_path() / ("berth-secrets-disk-" + TestName());
  if (OnTmpfs(fs::current_path())) GTEST_SKIP() << "the working directory is on tmpfs";
  fs::remove_all(base);
  SecretsDir dir({(base / "root").string(), /*mount_tmpfs=*/false});
  auto f = Files({{"db_password", "hunter2"}});
  auto written = dir.Write("a1", "t", f);
  ASSERT_FALSE(written.ok());
  EXPECT_EQ(written.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(written.status().message().find("secrets dir " + (base / "root").string() + " is on"),
            std::string::npos)
      << written.status().message();
  EXPECT_NE(written.status().message().find("not tmpfs or ramfs: refusing to write secret files"),
            std::string::npos)
      << written.status().message();
  EXPECT_FALSE(fs::exists(base / "root" / "a1"));
  EXPECT_TRUE(f[0].value.empty());  // wiped even so
  fs::remove_all(base);
}

// As root, the agent gives a directory on a real disk a tmpfs of its own.
TEST(SecretsDirDiskTest, MountsATmpfsWhenItMay) {
  if (geteuid() != 0) GTEST_SKIP() << "mounting needs root";
  fs::path base = fs::current_path() / ("berth-secrets-mount-" + TestName());
  if (OnTmpfs(fs::current_path())) GTEST_SKIP() << "the working directory is on tmpfs";
  fs::remove_all(base);
  fs::path root = base / "root";
  {
    SecretsDir dir({root.string(), /*mount_tmpfs=*/true, 1 << 20});
    Status st = dir.Ready();
    if (!st.ok() && st.message().find("mounting a tmpfs failed") != std::string::npos) {
      fs::remove_all(base);
      GTEST_SKIP() << st.message();
    }
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_TRUE(OnTmpfs(root));
    EXPECT_EQ(ModeOf(root), 0700);
    auto f = Files({{"x", "v"}});
    ASSERT_TRUE(dir.Write("a1", "t", f).ok());
    EXPECT_EQ(Slurp(root / "a1" / "t" / "x"), "v");
    // A second agent (after a restart) finds the tmpfs there and mounts nothing more.
    SecretsDir again({root.string(), true, 1 << 20});
    EXPECT_TRUE(again.Ready().ok());
  }
  EXPECT_EQ(umount2(root.c_str(), MNT_DETACH), 0);
  EXPECT_FALSE(OnTmpfs(root));
  fs::remove_all(base);
}

}  // namespace
}  // namespace berth::agent
