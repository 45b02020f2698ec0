// berth: one binary. `berth agent` is the daemon; every other command is the CLI.
#include "cli/cli.h"

int main(int argc, char** argv) {
  return berth::cli::Main(argc, argv);
}
