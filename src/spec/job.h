// Job: the in-memory model of a job spec, what a user asks the cluster to run.
//
// A job holds task groups; a group is the unit of placement (its `count` instances each land on
// one machine, all its tasks together); a task is one container or process. Parsers
// (job_parser.h), the stored JSON form (job_json.h) and, later, fleet-unit and compose
// translators all produce this one model, and drivers, the scheduler, the router and secrets
// read it. Every field carries its default, so a parsed Job is complete: readers never need to
// know the defaults. The format is documented in docs/jobspec.md.
// Thread-safety: plain values; safe to copy between threads, no shared state.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace berth::spec {

enum class JobType {
  kService,  // long-running; restarted and kept at `count`
  kBatch,    // runs to completion
  kSystem,   // one instance of each group on every eligible machine; `count` is ignored
};

enum class DriverKind { kDocker, kProcess };

enum class ConstraintOperator {
  kEqual,          // "=="
  kNotEqual,       // "!="
  kRegexp,         // "regexp": ECMAScript regular expression, searched in the attribute
  kSetContains,    // "set_contains": attribute is a comma list holding every value item
  kVersion,        // "version": value is a version constraint such as ">= 1.2, < 2"
  kIsSet,          // "is_set"
  kIsNotSet,       // "is_not_set"
  kDistinctHosts,  // "distinct_hosts": no two instances of the group on one machine
};

enum class RestartMode {
  kDelay,  // attempts exhausted: wait until the interval has passed, then try again
  kFail,   // attempts exhausted: the instance fails and the scheduler may place it elsewhere
};

enum class HealthCheckType { kHttp, kTcp, kCommand };

// Canonical spellings, as they appear in job files and in the stored JSON form.
std::string_view JobTypeName(JobType t);
std::string_view DriverKindName(DriverKind d);
std::string_view ConstraintOperatorName(ConstraintOperator op);
std::string_view RestartModeName(RestartMode m);
std::string_view HealthCheckTypeName(HealthCheckType t);
std::optional<JobType> JobTypeFromName(std::string_view s);
std::optional<DriverKind> DriverKindFromName(std::string_view s);
std::optional<ConstraintOperator> ConstraintOperatorFromName(std::string_view s);
std::optional<RestartMode> RestartModeFromName(std::string_view s);
std::optional<HealthCheckType> HealthCheckTypeFromName(std::string_view s);

// Durations are written "500ms", "10s", "5m", "1h" or compounds such as "1h30m"; "0" is zero.
// Returns nullopt for anything else, a negative value, or more than 100000h.
std::optional<std::chrono::milliseconds> ParseDuration(std::string_view s);
// The shortest exact spelling: 90000ms -> "90s", 5400000ms -> "90m", 1500ms -> "1500ms".
std::string FormatDuration(std::chrono::milliseconds d);

// Sizes are written with a unit "512B", "4KiB", "64MiB", "1GiB", "1TiB", or as a plain integer
// meaning MiB ("512"). Returns bytes, or nullopt for anything else or more than 1 PiB.
std::optional<int64_t> ParseSize(std::string_view s);
// The largest exact unit: 67108864 -> "64MiB", 1000 -> "1000B".
std::string FormatSize(int64_t bytes);

// A placement rule. `attribute` names a machine attribute ("kernel.version", "os.name",
// "machine.id", ...) or user metadata ("meta.rack"). `value` is empty for is_set, is_not_set
// and distinct_hosts; distinct_hosts also has no attribute.
struct Constraint {
  std::string attribute;
  ConstraintOperator op = ConstraintOperator::kEqual;
  std::string value;

  bool operator==(const Constraint&) const = default;
};

// How the cluster engine rolls a new version of a service job out: at most `max_parallel`
// instances of the old version are replaced at a time, each new one must stay healthy for
// `min_healthy_time`, and a rollout not healthy within `healthy_deadline` fails (and, with
// `auto_revert`, the last stable version is submitted again).
struct UpdatePolicy {
  int max_parallel = 1;
  std::chrono::milliseconds min_healthy_time{10'000};
  std::chrono::milliseconds healthy_deadline{300'000};
  bool auto_revert = false;

  bool operator==(const UpdatePolicy&) const = default;
};

// What the agent does when a task of the group exits (or fails its health check): restart it
// after `delay`, doubling each time up to `max_delay`, at most `attempts` times per `interval`.
struct RestartPolicy {
  int attempts = 3;
  std::chrono::milliseconds interval{300'000};
  std::chrono::milliseconds delay{1'000};
  std::chrono::milliseconds max_delay{60'000};
  RestartMode mode = RestartMode::kDelay;

  bool operator==(const RestartPolicy&) const = default;
};

// A network port of a task. The host port is `static_port` when set, else chosen by the agent
// at placement; either way the task sees it as ${BERTH_PORT_<name>}. `to` is the container port
// the host port maps to (docker only; 0 means the same number as the host port).
struct Port {
  std::string name;
  int to = 0;
  int static_port = 0;  // 0: dynamic

  bool operator==(const Port&) const = default;
};

struct Resources {
  int64_t cpu = 100;                   // MHz-like shares
  int64_t memory_bytes = 256LL << 20;  // hard limit

  bool operator==(const Resources&) const = default;
};

struct HealthCheck {
  HealthCheckType type = HealthCheckType::kHttp;
  std::string port;                  // http, tcp: a port name of the task
  std::string path = "/";            // http only; empty for other types
  std::vector<std::string> command;  // command only: argv run inside the task's environment
  std::chrono::milliseconds interval{10'000};
  std::chrono::milliseconds timeout{2'000};
  int healthy_threshold = 1;    // consecutive passes to turn healthy
  int unhealthy_threshold = 3;  // consecutive failures to turn unhealthy

  bool operator==(const HealthCheck&) const = default;
};

// Host names the router sends to this task, while it is running (and healthy, if checked).
struct Route {
  std::vector<std::string> hosts;  // lower case; "*.example.com" matches one label
  std::string port;                // a port name of the task
  std::string path_prefix = "/";

  bool operator==(const Route&) const = default;
};

// `source` is a named volume ("data") or an absolute host path ("/srv/data").
struct Volume {
  std::string source;
  std::string target;  // absolute path inside the container
  bool read_only = false;

  bool operator==(const Volume&) const = default;
};

// A secret the task needs: the agent opens the sealed value at `path` (secrets/<path> in the
// store) before every start and hands it over as a file or an environment variable. Exactly one
// of `file` and `env` is set. Only this reference is part of the job; the value never is.
struct SecretRef {
  std::string path;  // "db/password": segments of [A-Za-z0-9._-], no "." or ".." segment
  std::string file;  // a file name in the task's secrets directory (docker: /run/secrets/<file>)
  std::string env;   // an environment variable name
  int mode = 0400;   // file only: owner-only permission bits (0400, 0500, 0600 or 0700)
  // File only: the file's owner and group, for a container that runs as another user than the
  // agent's (its image's USER); -1: the agent's own.
  int uid = -1;
  int gid = -1;

  // "file db_password" or "env API_KEY": where the value goes, for people.
  std::string Target() const;
  bool operator==(const SecretRef&) const = default;
};

struct Task {
  std::string name;
  DriverKind driver = DriverKind::kDocker;
  std::string image;    // docker: required; process: empty
  std::string command;  // process: required (the program); docker: empty = the image's own
  std::vector<std::string> args;
  std::map<std::string, std::string> env;
  std::string workdir;  // empty: the driver's default
  std::vector<Port> ports;
  Resources resources;
  std::vector<Constraint> constraints;
  std::optional<HealthCheck> health;
  std::optional<Route> route;
  std::vector<Volume> volumes;                     // docker only
  std::chrono::milliseconds kill_timeout{10'000};  // between the stop signal and SIGKILL
  std::map<std::string, std::string> labels;
  std::vector<SecretRef> secrets;  // targets unique within the task

  const Port* FindPort(std::string_view port_name) const;
  bool operator==(const Task&) const = default;
};

// Where the scheduler puts a group's instances among the machines that pass its constraints.
// A job file may write a `placement` block at job level (the default for every group) and at
// group level (each key it writes replaces the job level's); the model holds the result per
// group.
struct Placement {
  std::string strategy = "binpack";  // "binpack", "spread" or "random"
  // spread: the machine attribute whose values the instances are spread over ("meta.rack");
  // "machine.id" by default; empty for the other strategies.
  std::string spread_attribute;
  // fleet's MachineOf: only machines already running an allocation of each of these jobs.
  std::vector<std::string> machine_of;
  // fleet's Conflicts: never a machine running an allocation of a job matching any of these
  // patterns ('*' matches any run of characters: "db-*").
  std::vector<std::string> conflicts;

  bool operator==(const Placement&) const = default;
};

struct Group {
  std::string name;
  int count = 1;
  RestartPolicy restart;
  std::vector<Constraint> constraints;
  Placement placement;
  std::vector<Task> tasks;

  bool operator==(const Group&) const = default;
};

struct Job {
  std::string name;
  JobType type = JobType::kService;
  int priority = 50;
  std::vector<std::string> datacenters;  // empty: any datacenter
  std::vector<Constraint> constraints;
  UpdatePolicy update;
  std::vector<Group> groups;
  // Set by the job registry on each submission (1, 2, ...); 0 in a file never submitted. A file
  // may carry it (e.g. an edited copy of the stored form); the registry decides what it means.
  int64_t version = 0;

  bool operator==(const Job&) const = default;
};

// Lower-case letters, digits and '-', starting with a letter or digit, at most 63 characters:
// the rule for job, group and task names (they become parts of container names and DNS labels).
bool IsValidName(std::string_view s);

// A secret path: 1-256 characters, '/'-separated segments of letters, digits, '.', '_' and '-',
// none empty, "." or "..": so it is relative and names one store key under secrets/.
bool IsValidSecretPath(std::string_view s);
// A secret file name: 1-255 letters, digits, '.', '_' and '-', not "." or "..".
bool IsValidSecretFileName(std::string_view s);
// The largest uid or gid a secret file may be given.
constexpr int kMaxOwnerId = 2147483646;
// Where a docker task sees its secret files.
inline constexpr std::string_view kContainerSecretsDir = "/run/secrets";

}  // namespace berth::spec
