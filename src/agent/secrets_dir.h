// SecretsDir: where the agent writes its tasks' secret files, `<root>/<alloc>/<task>/<file>`,
// and the guard that keeps their plaintext off real disks.
//
// The root (by default /run/berth/<machine-id>/secrets) must be on a tmpfs or ramfs: Ready()
// checks that with statfs and, when it is not and `mount_tmpfs` is set, mounts a tmpfs there
// (nosuid, nodev, noexec, mode 0700; this needs root). When neither holds, every write is
// refused with kFailedPrecondition naming the directory and its file system, so a task with
// file secrets does not start rather than put them on disk.
//
// The root must be berth's own: Ready() leaves a marker file (.berth-secrets-dir) in it, and
// refuses a root that already holds anything without one; RemoveAllExcept touches only a
// marked root, and only directories in it.
// Directories are created 0700 (see below for 0711), files with their given mode (0400 by default)
// through O_CREAT|O_EXCL|O_NOFOLLOW relative to directory descriptors opened O_NOFOLLOW, so nothing
// is written through a symlink or into a file that was already there; each plaintext buffer is
// wiped once written. A task's directory is written afresh for every start, and removed when the
// task stops (RemoveTask) or its allocation goes (RemoveAlloc, RemoveAllExcept at agent start).
// The files belong to the agent's user unless a file names its uid/gid (fchown, which needs
// root): that is how a container running as another user reads its secrets. The task's
// directory is then 0711, so that user can reach the files it is given (by name: it cannot
// list the directory) while each file's own mode keeps everyone else out.
// Alloc ids and task names are trusted to be single path components (the spec and allocation
// parsers guarantee it); Write refuses anything else.
// Thread-safety: every method may be called from any thread concurrently; writes to one task's
// directory must not race each other (one runner per allocation guarantees it).
#pragma once

#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "secrets/secret_buffer.h"

namespace berth::agent {

struct SecretsDirOptions {
  std::string root;
  bool mount_tmpfs = true;           // mount a tmpfs at `root` when it is on another file system
  int64_t tmpfs_bytes = 64LL << 20;  // size of the tmpfs mounted
};

struct SecretFile {
  std::string name;  // a file name: no '/', not "." or ".."
  int mode = 0400;
  secrets::SecretBuffer value;  // wiped by Write
  int uid = -1;                 // the file's owner; -1: the agent's user
  int gid = -1;                 // the file's group; -1: the agent's group
};

class SecretsDir {
 public:
  explicit SecretsDir(SecretsDirOptions options);

  const std::string& root() const { return options_.root; }
  // <root>/<alloc>/<task>: where Write puts the files of that task.
  std::string TaskDir(const std::string& alloc, const std::string& task) const;

  // Creates the root (0700) if missing and makes sure it is on tmpfs or ramfs, mounting a tmpfs
  // when allowed. Remembers success; a failure is tried again on the next call.
  Status Ready();
  // Replaces the task's directory with one holding exactly `files`; returns its path. The
  // buffers are wiped whether or not it succeeds; on failure nothing of the task's is left.
  Result<std::string> Write(const std::string& alloc, const std::string& task,
                            std::vector<SecretFile>& files);
  void RemoveTask(const std::string& alloc, const std::string& task);
  void RemoveAlloc(const std::string& alloc);
  // Removes the directory of every allocation not in `keep`; returns the ids removed.
  std::vector<std::string> RemoveAllExcept(const std::set<std::string>& keep);

 private:
  Status CheckRoot();
  void Remove(const std::string& path);

  const SecretsDirOptions options_;
  std::mutex mu_;       // serialises Ready (the mount)
  bool ready_ = false;  // guarded by mu_
};

}  // namespace berth::agent
