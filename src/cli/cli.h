// The `berth` command line: `berth agent ...` runs the daemon; every other command is a client
// of an agent's HTTP API (address from --addr or BERTH_ADDR). Tables for people, --json for
// scripts; on failure, one line on stderr and a non-zero exit code.
#pragma once

namespace berth::cli {

int Main(int argc, char** argv);

}  // namespace berth::cli
