#include "agent/secrets_dir.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <system_error>

namespace berth::agent {

namespace fs = std::filesystem;

namespace {

std::string ErrnoText(int err) {
  return std::error_code(err, std::generic_category()).message();
}

// In the root of every secrets dir berth uses: the sweep removes only what is in such a one.
constexpr const char* kMarker = ".berth-secrets-dir";

bool InMemory(const struct statfs& s) {
  return s.f_type == TMPFS_MAGIC || s.f_type == RAMFS_MAGIC;
}

std::string FsName(const struct statfs& s) {
  switch (s.f_type) {
    case EXT4_SUPER_MAGIC:
      return "ext2/3/4";
    case XFS_SUPER_MAGIC:
      return "xfs";
    case BTRFS_SUPER_MAGIC:
      return "btrfs";
    case OVERLAYFS_SUPER_MAGIC:
      return "overlayfs";
    case NFS_SUPER_MAGIC:
      return "nfs";
    default: {
      char buf[32];
      snprintf(buf, sizeof buf, "file system 0x%lx", static_cast<unsigned long>(s.f_type));
      return buf;
    }
  }
}

bool IsComponent(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
         s.find('\0') == std::string::npos;
}

// Closes a descriptor at scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// mkdirat + openat(O_NOFOLLOW), then chmod 0700 (mkdir's mode goes through the umask).
int OpenDirAt(int parent, const std::string& name, bool must_be_new, std::string* why) {
  if (mkdirat(parent, name.c_str(), 0700) != 0 && (must_be_new || errno != EEXIST)) {
    *why = "mkdir " + name + ": " + ErrnoText(errno);
    return -1;
  }
  int fd = openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    *why = "open " + name + ": " + ErrnoText(errno);
    return -1;
  }
  if (fchmod(fd, 0700) != 0) {
    *why = "chmod " + name + ": " + ErrnoText(errno);
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

SecretsDir::SecretsDir(SecretsDirOptions options) : options_(std::move(options)) {}

std::string SecretsDir::TaskDir(const std::string& alloc, const std::string& task) const {
  return options_.root + "/" + alloc + "/" + task;
}

Status SecretsDir::CheckRoot() {
  const std::string& root = options_.root;
  struct stat st {};
  if (lstat(root.c_str(), &st) != 0) return Unavailable("stat " + root + ": " + ErrnoText(errno));
  if (!S_ISDIR(st.st_mode)) {
    return FailedPrecondition("secrets dir " + root + " is not a directory (or is a symlink)");
  }
  struct statfs sfs {};
  if (statfs(root.c_str(), &sfs) != 0) {
    return Unavailable("statfs " + root + ": " + ErrnoText(errno));
  }
  if (!InMemory(sfs)) {
    return FailedPrecondition("secrets dir " + root + " is on " + FsName(sfs) +
                              ", not tmpfs or ramfs");
  }
  return Status::Ok();
}

Status SecretsDir::Ready() {
  std::lock_guard lock(mu_);
  if (ready_) return Status::Ok();
  const std::string& root = options_.root;
  if (root.empty() || root[0] != '/') {
    return FailedPrecondition("secrets dir \"" + root + "\" is not an absolute path");
  }
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(root, ec))) {
    fs::create_directories(fs::path(root).parent_path(), ec);
    if (mkdir(root.c_str(), 0700) != 0 && errno != EEXIST) {
      return FailedPrecondition("cannot create secrets dir " + root + ": " + ErrnoText(errno));
    }
  }
  Status st = CheckRoot();
  if (st.code() == Code::kFailedPrecondition &&
      st.message().find("not tmpfs") != std::string::npos) {
    // Plaintext must not reach a real disk: give the directory a file system of its own in
    // memory, if we may.
    if (!options_.mount_tmpfs) {
      return FailedPrecondition(st.message() +
                                ": refusing to write secret files there (the agent does not "
                                "mount a tmpfs itself here; use --secrets-dir on a tmpfs)");
    }
    if (geteuid() != 0) {
      return FailedPrecondition(st.message() +
                                ": refusing to write secret files there, and the agent cannot "
                                "mount a tmpfs (it does not run as root); use --secrets-dir on "
                                "a tmpfs");
    }
    std::string data = "mode=0700,size=" + std::to_string(options_.tmpfs_bytes);
    if (mount("tmpfs", root.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, data.c_str()) !=
        0) {
      return FailedPrecondition(st.message() + ": refusing to write secret files there, and " +
                                "mounting a tmpfs failed: " + ErrnoText(errno));
    }
    spdlog::info("secrets: mounted a tmpfs at {} (task secret files live there)", root);
    st = CheckRoot();
  }
  BERTH_RETURN_IF_ERROR(st);
  // The directory must be berth's own: the sweep of leftovers removes what is in it. A
  // directory that already holds something without the marker (--secrets-dir /dev/shm, or
  // the data dir) is refused rather than emptied.
  const std::string marker = root + "/" + kMarker;
  if (access(marker.c_str(), F_OK) != 0) {
    if (!fs::is_empty(root, ec) || ec) {
      return FailedPrecondition("secrets dir " + root +
                                " already holds files berth did not put "
                                "there (no " +
                                kMarker +
                                " in it): give --secrets-dir a "
                                "directory of its own");
    }
    int fd = open(marker.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) {
      return FailedPrecondition("cannot create " + marker + ": " + ErrnoText(errno));
    }
    if (fd >= 0) close(fd);
  }
  if (chmod(root.c_str(), 0700) != 0) {
    return FailedPrecondition("chmod 0700 " + root + ": " + ErrnoText(errno));
  }
  ready_ = true;
  return Status::Ok();
}

Result<std::string> SecretsDir::Write(const std::string& alloc, const std::string& task,
                                      std::vector<SecretFile>& files) {
  struct Wiper {
    std::vector<SecretFile>& files;
    ~Wiper() {
      for (auto& f : files) f.value.Truncate(0);
    }
  } wiper{files};
  if (!IsComponent(alloc) || !IsComponent(task)) {
    return InvalidArgument("secrets: bad allocation or task name \"" + alloc + "/" + task + "\"");
  }
  for (const auto& f : files) {
    if (!IsComponent(f.name)) return InvalidArgument("secrets: bad file name \"" + f.name + "\"");
  }
  BERTH_RETURN_IF_ERROR(Ready());
  RemoveTask(alloc, task);  // a fresh directory for every start: no file of an earlier run stays
  const std::string dir = TaskDir(alloc, task);
  auto failed = [&](const std::string& why) -> Status {
    RemoveTask(alloc, task);
    return Unavailable("writing secret files to " + dir + ": " + why);
  };
  Fd root(open(options_.root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (root.fd < 0) return failed("open " + options_.root + ": " + ErrnoText(errno));
  std::string why;
  Fd alloc_dir(OpenDirAt(root.fd, alloc, /*must_be_new=*/false, &why));
  if (alloc_dir.fd < 0) return failed(why);
  Fd task_dir(OpenDirAt(alloc_dir.fd, task, /*must_be_new=*/true, &why));
  if (task_dir.fd < 0) return failed(why);
  // The same file system as the root, unless something was mounted in between: check the
  // directory the files really go to.
  struct statfs sfs {};
  if (fstatfs(task_dir.fd, &sfs) != 0) return failed("statfs: " + ErrnoText(errno));
  bool owned = std::any_of(files.begin(), files.end(),
                           [](const SecretFile& f) { return f.uid >= 0 || f.gid >= 0; });
  if (owned && fchmod(task_dir.fd, 0711) != 0) {
    return failed("chmod 0711 " + task + ": " + ErrnoText(errno));
  }
  if (!InMemory(sfs)) {
    RemoveTask(alloc, task);
    return FailedPrecondition("secrets dir " + dir + " is on " + FsName(sfs) +
                              ", not tmpfs or ramfs: refusing to write secret files there");
  }
  for (auto& f : files) {
    Fd fd(openat(task_dir.fd, f.name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                 static_cast<mode_t>(f.mode)));
    if (fd.fd < 0) return failed("create " + f.name + ": " + ErrnoText(errno));
    if ((f.uid >= 0 || f.gid >= 0) &&
        fchown(fd.fd, static_cast<uid_t>(f.uid), static_cast<gid_t>(f.gid)) != 0) {
      return failed(fmt::format("chown {} to {}:{}: {}", f.name, f.uid, f.gid, ErrnoText(errno)));
    }
    if (fchmod(fd.fd, static_cast<mode_t>(f.mode)) != 0) {
      return failed("chmod " + f.name + ": " + ErrnoText(errno));
    }
    size_t done = 0;
    while (done < f.value.size()) {
      ssize_t n = write(fd.fd, f.value.data() + done, f.value.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return failed("write " + f.name + ": " + ErrnoText(n < 0 ? errno : EIO));
      done += static_cast<size_t>(n);
    }
    f.value.Truncate(0);
  }
  return dir;
}

void SecretsDir::Remove(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);  // removes symlinks, never follows them
  if (ec) spdlog::warn("secrets: removing {}: {}", path, ec.message());
}

void SecretsDir::RemoveTask(const std::string& alloc, const std::string& task) {
  if (!IsComponent(alloc) || !IsComponent(task)) return;
  // Never through a symlink in place of the allocation's directory (remove_all follows a link
  // in the middle of a path; it only spares the last component).
  struct stat st {};
  std::string alloc_dir = options_.root + "/" + alloc;
  if (lstat(alloc_dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) Remove(TaskDir(alloc, task));
  // The allocation's directory goes with its last task.
  std::error_code ec;
  fs::remove(options_.root + "/" + alloc, ec);  // fails (and is meant to) while not empty
}

void SecretsDir::RemoveAlloc(const std::string& alloc) {
  if (!IsComponent(alloc)) return;
  Remove(options_.root + "/" + alloc);
}

std::vector<std::string> SecretsDir::RemoveAllExcept(const std::set<std::string>& keep) {
  std::vector<std::string> removed;
  std::error_code ec;
  // Only in a directory berth made its own (Ready), and only directories: nothing else is an
  // allocation's.
  if (access((options_.root + "/" + kMarker).c_str(), F_OK) != 0) return removed;
  fs::directory_iterator it(options_.root, ec);
  if (ec) return removed;  // no root yet: nothing was ever written
  for (const auto& entry : it) {
    std::string id = entry.path().filename().string();
    if (keep.count(id) || !entry.is_directory(ec) || entry.is_symlink(ec)) continue;
    Remove(entry.path().string());
    removed.push_back(id);
  }
  return removed;
}

}  // namespace berth::agent
